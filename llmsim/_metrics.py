"""vLLM V1 Prometheus metrics: per-model counters and histograms, and the text exposition."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["EngineMetrics", "Histogram", "ModelGauges", "render_prometheus"]

# Bucket bounds as in vllm/v1/metrics/loggers.py.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort")


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n


@dataclass(slots=True)
class EngineMetrics:
    """Counters for one served model (one vLLM engine)."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    success: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED_REASONS, 0))
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_BUCKETS))


def _fmt(v: float) -> str:
    return repr(float(v))


def _labels(model: str, extra: str = "") -> str:
    esc = model.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{engine="0",model_name="{esc}"{extra}}}'


_COUNTERS = (
    ("vllm:prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens"),
    ("vllm:generation_tokens", "Number of generation tokens processed.", "generation_tokens"),
    (
        "vllm:prefix_cache_queries",
        "Prefix cache queries, in terms of number of queried tokens.",
        "prefix_queries",
    ),
    (
        "vllm:prefix_cache_hits",
        "Prefix cache hits, in terms of number of cached tokens.",
        "prefix_hits",
    ),
)
_HISTOGRAMS = (
    ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", "ttft"),
    ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", "itl"),
    (
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        "e2e",
    ),
    (
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        "queue_time",
    ),
)


@dataclass(slots=True)
class ModelGauges:
    running: int
    waiting: int
    kv_usage: float


def render_prometheus(engines: Iterable[tuple[str, EngineMetrics, ModelGauges]]) -> str:
    rows = list(engines)
    out: list[str] = []
    for name, help_, attr in (
        ("vllm:num_requests_running", "Number of requests in model execution batches.", "running"),
        ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "waiting"),
        ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "kv_usage"),
    ):
        out.append(f"# HELP {name} {help_}\n# TYPE {name} gauge\n")
        for model, _, g in rows:
            out.append(f"{name}{_labels(model)} {_fmt(getattr(g, attr))}\n")
    for name, help_, attr in _COUNTERS:
        out.append(f"# HELP {name}_total {help_}\n# TYPE {name}_total counter\n")
        for model, m, _ in rows:
            out.append(f"{name}_total{_labels(model)} {_fmt(getattr(m, attr))}\n")
    name = "vllm:request_success"
    out.append(f"# HELP {name}_total Count of successfully processed requests.\n")
    out.append(f"# TYPE {name}_total counter\n")
    for model, m, _ in rows:
        for reason, count in m.success.items():
            extra = f',finished_reason="{reason}"'
            out.append(f"{name}_total{_labels(model, extra)} {_fmt(count)}\n")
    for name, help_, attr in _HISTOGRAMS:
        out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
        for model, m, _ in rows:
            h: Histogram = getattr(m, attr)
            cumulative = 0
            for bound, count in zip((*h.bounds, float("inf")), h.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _fmt(bound)
                extra = f',le="{le}"'
                out.append(f"{name}_bucket{_labels(model, extra)} {_fmt(cumulative)}\n")
            out.append(f"{name}_count{_labels(model)} {_fmt(h.count)}\n")
            out.append(f"{name}_sum{_labels(model)} {_fmt(h.sum)}\n")
    return "".join(out)
