"""Deterministic text and embeddings, the tokenizer, and small parsers."""

from __future__ import annotations

import math

import httpx
import pytest

from llmsim import RunningSimulator
from llmsim._faults import FaultHeaderError, parse_fault_header
from llmsim._ollama import canonical_name, parse_keep_alive
from llmsim._textgen import (
    apply_stop,
    count_tokens,
    embed,
    generate_tokens,
    plan_output,
    tokenize,
)


def _answer(seed: int, prompt: str = "hi", temperature: float | None = None) -> str:
    tokens, _, _ = plan_output(
        model="m", seed=seed, prompt=prompt, base_len=50, jitter=0.0, temperature=temperature
    )
    return "".join(tokens)


def test_same_inputs_same_text_different_seed_different_text() -> None:
    assert _answer(1) == _answer(1)
    assert _answer(1) != _answer(2)
    assert _answer(1, "hi") != _answer(1, "hello")
    assert _answer(1, temperature=0) == _answer(2, temperature=0)  # greedy ignores the seed


def test_every_output_token_is_one_token() -> None:
    tokens = generate_tokens(12345, 500)
    assert count_tokens("".join(tokens)) == 500
    assert tokenize("Hello, world!") == ["Hello", ",", "world", "!"]


def test_length_and_stop() -> None:
    toks, finish, stop = plan_output(
        model="m", seed=0, prompt="p", base_len=10, jitter=0.0, max_tokens=4
    )
    assert (len(toks), finish, stop) == (4, "length", None)
    toks, finish, _ = plan_output(
        model="m", seed=0, prompt="p", base_len=10, jitter=0.0, ignore_eos=True, max_tokens=40
    )
    assert (len(toks), finish) == (40, "stop")
    cut, matched = apply_stop(["Alpha", " beta", ".", " Gamma"], [" bet", "."])
    assert cut == ["Alpha"]
    assert matched == " bet"
    cut, matched = apply_stop(["Alpha", " beta"], ["ta"])
    assert cut == ["Alpha", " be"]
    assert matched == "ta"


def test_embeddings_are_unit_length_and_deterministic() -> None:
    a = embed("m", "text", 768)
    assert a == embed("m", "text", 768)
    assert a != embed("m", "other", 768)
    assert a != embed("n", "text", 768)
    assert len(a) == 768
    assert math.isclose(math.fsum(x * x for x in a), 1.0, rel_tol=1e-12)


async def test_determinism_over_http(ollama_sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    async def ask(seed: int) -> str:
        body = {
            "model": "qwen3:8b",
            "prompt": "why?",
            "stream": False,
            "options": {"seed": seed},
        }
        resp = await http.post(ollama_sim.base_url + "/api/generate", json=body)
        text: str = resp.json()["response"]
        return text

    assert await ask(1) == await ask(1)
    assert await ask(1) != await ask(2)


def test_keep_alive_and_names() -> None:
    assert parse_keep_alive("5m") == 300
    assert parse_keep_alive("1h30m") == 5400
    assert parse_keep_alive("-1s") == -1
    assert parse_keep_alive(0) == 0
    assert parse_keep_alive("250ms") == pytest.approx(0.25)
    assert parse_keep_alive(None) is None
    with pytest.raises(ValueError, match="invalid duration"):
        parse_keep_alive("soon")
    assert canonical_name("mxbai-embed-large") == "mxbai-embed-large:latest"
    assert canonical_name("qwen3:8b") == "qwen3:8b"
    assert canonical_name("hf.co/org/model") == "hf.co/org/model:latest"


def test_fault_header_parser() -> None:
    parsed = parse_fault_header("error=503, disconnect_after=3,latency_ms=2.5", 500)
    assert parsed == {"error_status": 503, "disconnect_after": 3, "latency_ms": 2.5}
    assert parse_fault_header("error", 502) == {"error_status": 502}
    assert parse_fault_header("stall_after=2,malformed_after=1,midstream_error_after=0", 500) == {
        "stall_after": 2,
        "malformed_after": 1,
        "midstream_error_after": 0,
    }
    assert parse_fault_header("slow_first_token_ms=500", 500) == {"slow_first_token_ms": 500.0}
    for bad in ("boom", "error=abc", "stall_after=-1", "error=302"):
        with pytest.raises(FaultHeaderError):
            parse_fault_header(bad, 500)
