"""Parses vLLM's Prometheus text (``GET /metrics``) into the few figures the control service
exports: prefix cache hits/queries, queue depth, KV cache usage. Old and new names are both read
(protocols.md 2.8): ``gpu_cache_usage_perc`` became ``kv_cache_usage_perc`` and
``gpu_prefix_cache_*`` became ``prefix_cache_*``. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

_ALIASES: dict[str, tuple[str, ...]] = {
    "prefix_cache_hits": ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries"),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "requests_running": ("vllm:num_requests_running",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
}


@dataclass(frozen=True, slots=True)
class VllmFigures:
    """Summed over every engine/model series; None: the engine exports no such metric."""

    prefix_cache_hits: float | None = None
    prefix_cache_queries: float | None = None
    requests_waiting: float | None = None
    requests_running: float | None = None
    kv_cache_usage: float | None = None

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hits over queries since the engine started (PromQL rate() gives the recent one)."""
        if not self.prefix_cache_queries or self.prefix_cache_hits is None:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries


def parse_vllm_metrics(text: str) -> VllmFigures:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # Counters come as <name>_total (the family name drops the suffix).
            name = sample.name.removesuffix("_total")
            if sample.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            sums[name] = sums.get(name, 0.0) + sample.value
    values: dict[str, float | None] = {}
    for field, names in _ALIASES.items():
        values[field] = next((sums[n] for n in names if n in sums), None)
    return VllmFigures(**values)
