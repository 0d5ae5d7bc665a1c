"""The engines' own load signals, parsed from what they serve. Plain logic, no I/O.

vLLM's ``/metrics`` (Prometheus text): ``vllm:num_requests_running``/``_waiting`` (gauges),
``vllm:kv_cache_usage_perc`` (0..1; before V1's rename ``vllm:gpu_cache_usage_perc``), and the
prefix-cache counters ``vllm:prefix_cache_queries``/``_hits`` (tokens; early V1 named them
``vllm:gpu_prefix_cache_*``). Each is summed over its label sets (one per served model).

Ollama has no queue gauge: ``/api/ps`` lists the loaded models, and the router's own in-flight
count is the load. A replica that has the requested model loaded avoids a load stall.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EngineSignals", "parse_ollama_ps", "parse_vllm_metrics"]

_ALIASES: Mapping[str, str] = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv",
    "vllm:gpu_cache_usage_perc": "kv_old",
    "vllm:prefix_cache_queries_total": "queries",
    "vllm:prefix_cache_queries": "queries",
    "vllm:prefix_cache_hits_total": "hits",
    "vllm:prefix_cache_hits": "hits",
    "vllm:gpu_prefix_cache_queries_total": "queries_old",
    "vllm:gpu_prefix_cache_hits_total": "hits_old",
}


@dataclass(frozen=True, slots=True)
class EngineSignals:
    """One scrape of one replica."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    prefix_queries: float = 0.0  # cumulative tokens (counter)
    prefix_hits: float = 0.0
    loaded_models: tuple[str, ...] = ()

    @property
    def load(self) -> int:
        return self.running + self.waiting


def parse_vllm_metrics(text: str) -> EngineSignals:
    """Sum the known series; unknown lines, comments and malformed values are ignored."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_end = len(line)
        for i, ch in enumerate(line):
            if ch in "{ ":
                name_end = i
                break
        field = _ALIASES.get(line[:name_end])
        if field is None:
            continue
        rest = line[name_end:]
        if rest.startswith("{"):
            rest = rest[rest.find("}") + 1 :]
        parts = rest.split()  # value, then an optional timestamp
        try:
            v = float(parts[0])
        except (IndexError, ValueError):
            continue
        sums[field] = sums.get(field, 0.0) + v
    return EngineSignals(
        running=int(sums.get("running", 0.0)),
        waiting=int(sums.get("waiting", 0.0)),
        kv_usage=sums.get("kv", sums.get("kv_old", 0.0)),
        prefix_queries=sums.get("queries", sums.get("queries_old", 0.0)),
        prefix_hits=sums.get("hits", sums.get("hits_old", 0.0)),
    )


def parse_ollama_ps(body: Any) -> EngineSignals:
    """``{"models": [{"name": ..., "model": ...}, ...]}`` -> the loaded model names."""
    models = body.get("models") if isinstance(body, dict) else None
    names: list[str] = []
    for m in models if isinstance(models, list) else ():
        if isinstance(m, dict):
            name = m.get("name") or m.get("model")
            if isinstance(name, str):
                names.append(name)
    return EngineSignals(loaded_models=tuple(names))
