"""The table printed at the end, and the comparison of two providers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmtools.llmbench._stats import Summary

# (row label, value getter, formatter, which way is better: +1 higher, -1 lower, 0 not compared)
_Row = tuple[str, Callable[[Summary], float | int | None], Callable[[float | int], str], int]


def _fmt_ms(v: float | int) -> str:
    return f"{v / 1000:.2f} s" if v >= 10_000 else f"{v:.1f} ms"


def _fmt_rate(v: float | int) -> str:
    return f"{v:,.1f}"


def _fmt_int(v: float | int) -> str:
    return f"{int(v):,}"


def _fmt_pct(v: float | int) -> str:
    return f"{v * 100:.1f}%"


ROWS: tuple[_Row, ...] = (
    ("requests", lambda s: s.requests, _fmt_int, 0),
    ("success rate", lambda s: s.success_rate, _fmt_pct, +1),
    ("TTFT avg", lambda s: s.ttft_avg_ms, _fmt_ms, -1),
    ("TTFT p50", lambda s: s.ttft_p50_ms, _fmt_ms, -1),
    ("TTFT p95", lambda s: s.ttft_p95_ms, _fmt_ms, -1),
    ("TTFT p99", lambda s: s.ttft_p99_ms, _fmt_ms, -1),
    ("inter-token gap p50", lambda s: s.itl_p50_ms, _fmt_ms, -1),
    ("inter-token gap p99", lambda s: s.itl_p99_ms, _fmt_ms, -1),
    ("tokens/s per request (avg)", lambda s: s.tokens_per_s_avg, _fmt_rate, +1),
    ("tokens/s per request (p50)", lambda s: s.tokens_per_s_p50, _fmt_rate, +1),
    ("tokens/s aggregate", lambda s: s.aggregate_tokens_per_s, _fmt_rate, +1),
    ("total tokens", lambda s: s.total_tokens, _fmt_int, 0),
    ("wall time", lambda s: s.wall_s * 1000, _fmt_ms, 0),
)


def improvement(base: float | int | None, new: float | int | None, better: int) -> float | None:
    """How many times better ``new`` is than ``base`` (>1 better), for rows that compare."""
    if better == 0 or base is None or new is None or base <= 0 or new <= 0:
        return None
    return new / base if better > 0 else base / new


def comparison(base: Summary, new: Summary) -> dict[str, Any]:
    """``{row: factor}`` where the factor says how many times better ``new`` is (the seed
    report's "Improvement" column: throughput new/base, latency base/new)."""
    out: dict[str, Any] = {"baseline": base.label, "candidate": new.label}
    for name, get, _fmt, better in ROWS:
        factor = improvement(get(base), get(new), better)
        if factor is not None:
            out[name] = round(factor, 3)
    return out


def render_table(summaries: Sequence[Summary], title: str) -> str:
    """Rows are metrics, columns are providers; with exactly two, a third column gives the
    second's improvement over the first."""
    heads = ["metric", *(s.label for s in summaries)]
    compare = len(summaries) == 2
    if compare:
        heads.append(f"{summaries[1].label} vs {summaries[0].label}")
    rows: list[list[str]] = []
    for name, get, fmt, better in ROWS:
        values = [get(s) for s in summaries]
        row = [name, *("-" if v is None else fmt(v) for v in values)]
        if compare:
            factor = improvement(values[0], values[1], better)
            row.append("" if factor is None else f"{factor:.2f}x")
        rows.append(row)
    errors = [", ".join(f"{k} {v}" for k, v in s.errors.items()) or "none" for s in summaries]
    rows.append(["errors", *errors, *([""] if compare else [])])
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
