"""Summaries of a run: success rate, TTFT percentiles, tokens/s, errors by code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmcore.stats import percentile
from llmtools.llmbench._targets import Sample


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 3)


@dataclass(slots=True)
class Summary:
    """What the tool reports for one provider; latencies in milliseconds."""

    label: str
    requests: int
    succeeded: int
    success_rate: float
    ttft_avg_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ttft_p99_ms: float | None
    itl_p50_ms: float | None
    itl_p99_ms: float | None
    tokens_per_s_avg: float | None
    tokens_per_s_p50: float | None
    aggregate_tokens_per_s: float
    total_tokens: int
    prompt_tokens: int
    wall_s: float
    errors: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(label: str, samples: Sequence[Sample], wall_s: float) -> Summary:
    ok = [s for s in samples if s.ok]
    ttft = [t for s in ok if (t := s.ttft_s) is not None]
    rates = [r for s in ok if (r := s.tokens_per_s()) is not None]
    gaps = [g for s in ok for g in s.gaps()]
    total = sum(s.completion_tokens for s in ok)
    errors = Counter(s.error for s in samples if s.error)
    rate_p50 = percentile(rates, 50)
    rate_avg = mean(rates)
    return Summary(
        label=label,
        requests=len(samples),
        succeeded=len(ok),
        success_rate=round(len(ok) / len(samples), 4) if samples else 0.0,
        ttft_avg_ms=_ms(mean(ttft)),
        ttft_p50_ms=_ms(percentile(ttft, 50)),
        ttft_p95_ms=_ms(percentile(ttft, 95)),
        ttft_p99_ms=_ms(percentile(ttft, 99)),
        itl_p50_ms=_ms(percentile(gaps, 50)),
        itl_p99_ms=_ms(percentile(gaps, 99)),
        tokens_per_s_avg=None if rate_avg is None else round(rate_avg, 2),
        tokens_per_s_p50=None if rate_p50 is None else round(rate_p50, 2),
        aggregate_tokens_per_s=round(total / wall_s, 2) if wall_s > 0 else 0.0,
        total_tokens=total,
        prompt_tokens=sum(s.prompt_tokens for s in ok),
        wall_s=round(wall_s, 3),
        errors=dict(sorted(errors.items())),
    )


def sample_rows(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Per-request records for the JSON output (times relative to the first request)."""
    rows = list(samples)
    if not rows:
        return []
    base = min(s.t_start for s in rows)
    return [
        {
            "start_ms": _ms(s.t_start - base),
            "ttft_ms": _ms(s.ttft_s),
            "total_ms": _ms(s.t_end - s.t_start),
            "completion_tokens": s.completion_tokens,
            "prompt_tokens": s.prompt_tokens,
            "tokens_per_s": None if (r := s.tokens_per_s()) is None else round(r, 2),
            "error": s.error or None,
        }
        for s in rows
    ]
