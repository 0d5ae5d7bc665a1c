"""/metrics is valid Prometheus text with the vLLM V1 names, and the numbers add up."""

from __future__ import annotations

import re

import httpx
import openai

from llmsim import RunningSimulator

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Minimal exposition-format parser: samples keyed by (name, labels), and metric types."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


def value(samples: Samples, name: str, model: str, **extra: str) -> float:
    key = frozenset({("engine", "0"), ("model_name", model), *extra.items()})
    return samples[(name, key)]


REQUIRED = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prefix_cache_queries_total": "counter",
    "vllm:prefix_cache_hits_total": "counter",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
    "vllm:request_success_total": "counter",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
}


async def test_metrics_parse_and_count(vllm_sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    model = "Qwen/Qwen3-8B"
    async with openai.AsyncOpenAI(base_url=vllm_sim.base_url + "/v1", api_key="x") as client:
        done = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=10
        )
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], stream=True
        )
        async for _ in stream:
            pass
    resp = await http.get(vllm_sim.base_url + "/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    samples, types = parse(resp.text)
    for name, kind in REQUIRED.items():
        assert types.get(name) == kind, name
    assert done.usage is not None
    assert value(samples, "vllm:generation_tokens_total", model) == 10 + 24
    assert value(samples, "vllm:prompt_tokens_total", model) == 2 * done.usage.prompt_tokens
    assert value(samples, "vllm:request_success_total", model, finished_reason="length") == 1
    assert value(samples, "vllm:request_success_total", model, finished_reason="stop") == 1
    assert value(samples, "vllm:request_success_total", model, finished_reason="abort") == 0
    assert value(samples, "vllm:num_requests_running", model) == 0
    for hist, count in (
        ("vllm:time_to_first_token_seconds", 2),
        ("vllm:e2e_request_latency_seconds", 2),
        ("vllm:inter_token_latency_seconds", 9 + 23),
    ):
        buckets = sorted(
            (float(dict(k[1])["le"]), v)
            for k, v in samples.items()
            if k[0] == hist + "_bucket" and ("model_name", model) in k[1]
        )
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{hist} buckets not cumulative"
        assert buckets[-1][0] == float("inf")
        assert buckets[-1][1] == count
        assert value(samples, hist + "_count", model) == count
        assert value(samples, hist + "_sum", model) >= 0
