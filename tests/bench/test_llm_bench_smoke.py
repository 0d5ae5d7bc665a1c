"""Smoke test of ``llm-bench``: three requests per provider against in-process simulators,
directly and through a real router on port 0; the JSON output has the documented fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from llmtools.llmbench import build_parser, load_prompts, run
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings

SUMMARY_FIELDS = {
    "label",
    "requests",
    "succeeded",
    "success_rate",
    "ttft_avg_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "tokens_per_s_avg",
    "tokens_per_s_p50",
    "aggregate_tokens_per_s",
    "total_tokens",
    "prompt_tokens",
    "wall_s",
    "errors",
    "samples",
}


@dataclass
class Stack:
    ollama: RunningSimulator
    vllm: RunningSimulator
    router: RouterApp


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    # The "test" profile: ~2 ms to the first token, 1 ms per token; 8 tokens keep it quick.
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA, completion_tokens=8))
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, completion_tokens=8))
    router = await start_router(
        RouterSettings(
            port=0,
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            grace_period_s=0.5,
        )
    )
    yield Stack(ollama, vllm, router)
    await router.stop(0)
    await vllm.stop()
    await ollama.stop()


def _check(doc: dict[str, Any], via: str) -> None:
    assert doc["tool"] == "llm-bench"
    assert doc["via"] == via
    assert doc["runs"] == 3
    assert doc["concurrency"] == 2
    assert set(doc["results"]) == {"ollama", "vllm"}
    for label, result in doc["results"].items():
        assert set(result) >= SUMMARY_FIELDS, label
        assert result["requests"] == 3
        assert result["success_rate"] == 1.0, result["errors"]
        assert result["errors"] == {}
        assert result["total_tokens"] == 3 * 8
        assert result["ttft_p50_ms"] > 0
        assert result["ttft_p99_ms"] >= result["ttft_p50_ms"]
        assert result["aggregate_tokens_per_s"] > 0
        assert len(result["samples"]) == 3
        assert all(s["error"] is None and s["completion_tokens"] == 8 for s in result["samples"])
    assert doc["comparison"]["baseline"] == "ollama"
    assert doc["comparison"]["candidate"] == "vllm"


@pytest.mark.parametrize("via", ["direct", "router"])
async def test_compare_writes_json(
    stack: Stack, via: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    args = build_parser().parse_args(
        [
            "--compare",
            "--runs", "3",
            "--concurrency", "2",
            "--via", via,
            "--router", f"127.0.0.1:{stack.router.port}",
            "--ollama-url", stack.ollama.base_url,
            "--vllm-url", stack.vllm.base_url,
            "--timeout", "10",
            "--no-progress",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert await run(args) == 0
    _check(orjson.loads(out.read_bytes()), via)
    table = capsys.readouterr().out
    assert "TTFT p99" in table
    assert "tokens/s aggregate" in table


async def test_unreachable_engine_is_counted_by_code(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    args = build_parser().parse_args(
        [
            "--vllm-only",
            "--runs", "2",
            "--via", "direct",
            "--vllm-url", "http://127.0.0.1:9",  # discard port: nothing listens
            "--timeout", "5",
            "--no-progress",
            "--output", str(out),
        ]
    )  # fmt: skip
    assert await run(args) == 1
    doc = orjson.loads(out.read_bytes())
    assert doc["results"]["vllm"]["errors"] == {"CONNECT_FAILED": 2}
    assert doc["results"]["vllm"]["success_rate"] == 0.0


def test_default_prompts_share_a_system_prompt() -> None:
    prompts = load_prompts(None)
    assert len(prompts) >= 10
    assert len({p.system for p in prompts}) == 1
    assert len(prompts[0].system.split()) > 300  # long enough for prefix caching to matter
    assert len({p.user for p in prompts}) == len(prompts)


def test_jsonl_prompts_take_defaults_from_a_system_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"system": "be brief", "max_tokens": 32}\n'
        "# a comment\n"
        '{"id": "a", "task": "synthesis", "context": "[doc-1] x", "question": "why?"}\n'
        '{"prompt": "hello", "max_tokens": 4}\n'
    )
    a, b = load_prompts(path)
    assert (a.id, a.task, a.system, a.max_tokens) == ("a", "synthesis", "be brief", 32)
    assert "[doc-1] x" in a.user
    assert a.user.endswith("why?")
    assert (b.id, b.task, b.user, b.max_tokens) == ("p1", "analysis", "hello", 4)
    assert a.messages()[0] == {"role": "system", "content": "be brief"}
