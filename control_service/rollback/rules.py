"""The seed's automatic rollback triggers (section 6.4) as pure functions of plain data.

Each rule judges vLLM over one window of the routers' *answered* (non-shadow) traffic and says
PASS, FAIL or INCONCLUSIVE (Argo Rollouts' three outcomes, control-plane.md 3.5):

* ``error_rate``: errors / requests from counts summed over every router and task; FAIL above
  ``error_rate``; INCONCLUSIVE below ``min_requests`` requests ("one transient 5xx is a huge %").
* ``latency_p95``: the p95 of the merged histograms (never an average of per-router p95s):
  time to first token for the generate tasks against ``latency_p95_ms``, the whole call for
  Embed against ``embed_latency_p95_ms``; each needs ``min_requests`` observations. FAIL when
  either fails, PASS when one passes and none fails.
* ``consecutive_timeouts``: each router's latest count of consecutive vLLM timeouts; FAIL when
  ``timeout_routers_required`` routers (or every router that carried vLLM traffic in the window,
  when fewer did) are at ``consecutive_timeouts`` or more: one router can fail over locally, a
  fleet rollback needs agreement. INCONCLUSIVE when no router reported vLLM traffic.
* ``health``: the control service's own vLLM probe, with k8s-style hysteresis
  (:mod:`control_service.rollback.probes`); INCONCLUSIVE before the first probe.

Missing data is INCONCLUSIVE and INCONCLUSIVE never acts (argo-rollouts #1905, #1466).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control_service.rollback.probes import EngineHealth, HealthState
from control_service.state import RollbackRule, RollbackThresholds
from control_service.stats_windows import Aggregate, Histogram, StatsWindows
from llmcore.vocabulary import TaskName

EMBED_TASK: TaskName = "embedding"


class Outcome(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def json_number(value: float | None) -> float | str | None:
    """``value`` as JSON can carry it: infinities and NaN as strings."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's outcome with the numbers behind it (the audit evidence)."""

    rule: RollbackRule
    outcome: Outcome
    value: float | None
    threshold: float
    samples: int
    detail: str

    def evidence(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": self.outcome.value,
            "value": json_number(self.value),
            "threshold": self.threshold,
            "samples": self.samples,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Signals:
    """What the rules read: vLLM's answered traffic in one window, and its probe state.

    ``vllm`` holds the merged aggregate per task; ``consecutive_timeouts`` each router's latest
    count; ``window_seconds`` and the config versions are carried for the evidence."""

    window_seconds: float
    config_version: int
    min_config_version: int
    vllm: Mapping[TaskName, Aggregate] = field(default_factory=dict)
    consecutive_timeouts: Mapping[str, int] = field(default_factory=dict)
    vllm_health: EngineHealth = field(default_factory=EngineHealth)

    @property
    def routers(self) -> frozenset[str]:
        """Routers that reported answered vLLM traffic in the window."""
        out: set[str] = set()
        for agg in self.vllm.values():
            out |= agg.routers
        return frozenset(out)


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def error_rate(t: RollbackThresholds, s: Signals) -> RuleResult:
    total = StatsWindows.total(s.vllm.values())
    n = total.requests
    if n < t.min_requests:
        return RuleResult(
            "error_rate",
            Outcome.INCONCLUSIVE,
            total.error_rate,
            t.error_rate,
            n,
            f"{n} vLLM requests in the window, fewer than min_requests {t.min_requests}: hold",
        )
    rate = total.errors / n
    failed = rate > t.error_rate
    return RuleResult(
        "error_rate",
        Outcome.FAIL if failed else Outcome.PASS,
        rate,
        t.error_rate,
        n,
        f"{total.errors} errors in {n} vLLM requests = {_pct(rate)} "
        f"{'>' if failed else '<='} {_pct(t.error_rate)}",
    )


@dataclass(frozen=True, slots=True)
class _Latency:
    label: str
    outcome: Outcome
    p95: float | None
    threshold: float
    samples: int

    def text(self, min_requests: int) -> str:
        if self.outcome is Outcome.INCONCLUSIVE:
            return f"{self.label}: {self.samples} samples < min_requests {min_requests}"
        op = ">" if self.outcome is Outcome.FAIL else "<="
        p95 = "inf" if self.p95 is None or math.isinf(self.p95) else f"{self.p95:.0f}"
        return f"{self.label} p95 {p95} ms {op} {self.threshold:g} ms ({self.samples} samples)"


def _judge_p95(label: str, hist: Histogram | None, threshold: float, min_n: int) -> _Latency:
    n = hist.total if hist is not None else 0
    p95 = hist.quantile(0.95) if hist is not None else None
    if n < min_n or p95 is None:
        return _Latency(label, Outcome.INCONCLUSIVE, p95, threshold, n)
    return _Latency(label, Outcome.FAIL if p95 > threshold else Outcome.PASS, p95, threshold, n)


def merged_histogram(hists: list[Histogram | None]) -> Histogram | None:
    out: Histogram | None = None
    for h in hists:
        if h is None:
            continue
        if out is None:
            out = h.copy()
        else:
            out.merge(h)
    return out


def latency_p95(t: RollbackThresholds, s: Signals) -> RuleResult:
    ttft = merged_histogram([a.ttft_ms for task, a in s.vllm.items() if task != EMBED_TASK])
    embed = s.vllm.get(EMBED_TASK)
    parts = [
        _judge_p95("generate TTFT", ttft, t.latency_p95_ms, t.min_requests),
        _judge_p95(
            "embed total", embed.total_ms if embed else None, t.embed_latency_p95_ms, t.min_requests
        ),
    ]
    detail = "; ".join(p.text(t.min_requests) for p in parts)
    failing = [p for p in parts if p.outcome is Outcome.FAIL]
    passing = [p for p in parts if p.outcome is Outcome.PASS]
    if failing:
        worst = failing[0]
        outcome = Outcome.FAIL
    elif passing:
        worst = max(passing, key=lambda p: (p.p95 or 0.0) / p.threshold)
        outcome = Outcome.PASS
    else:
        worst = max(parts, key=lambda p: p.samples)
        outcome = Outcome.INCONCLUSIVE
        detail += ": hold"
    return RuleResult(
        "latency_p95", outcome, worst.p95, worst.threshold, sum(p.samples for p in parts), detail
    )


def consecutive_timeouts(t: RollbackThresholds, s: Signals) -> RuleResult:
    routers = s.routers
    counts = {r: c for r, c in s.consecutive_timeouts.items() if r in routers}
    worst = max(counts.values(), default=0)
    if not routers:
        return RuleResult(
            "consecutive_timeouts",
            Outcome.INCONCLUSIVE,
            None,
            t.consecutive_timeouts,
            0,
            "no router reported vLLM traffic in the window: hold",
        )
    tripped = sorted(r for r, c in counts.items() if c >= t.consecutive_timeouts)
    required = min(t.timeout_routers_required, len(routers))
    failed = len(tripped) >= required
    named = ", ".join(f"{r} ({counts[r]})" for r in tripped) or "none"
    return RuleResult(
        "consecutive_timeouts",
        Outcome.FAIL if failed else Outcome.PASS,
        worst,
        t.consecutive_timeouts,
        len(routers),
        f"routers at >= {t.consecutive_timeouts} consecutive vLLM timeouts: {named}; "
        f"{required} of {len(routers)} reporting required",
    )


def health(t: RollbackThresholds, s: Signals) -> RuleResult:
    h = s.vllm_health
    if h.state is HealthState.UNKNOWN:
        return RuleResult(
            "health",
            Outcome.INCONCLUSIVE,
            None,
            t.health_failure_threshold,
            h.probes,
            "vLLM not probed yet: hold",
        )
    failed = h.state is HealthState.UNHEALTHY
    detail = (
        f"{h.consecutive_failures} consecutive failed vLLM probes "
        f"(threshold {t.health_failure_threshold}): {h.last_detail}"
        if failed
        else f"vLLM healthy ({h.consecutive_successes} consecutive good probes)"
    )
    return RuleResult(
        "health",
        Outcome.FAIL if failed else Outcome.PASS,
        h.consecutive_failures,
        t.health_failure_threshold,
        h.probes,
        detail,
    )


def evaluate(t: RollbackThresholds, s: Signals) -> tuple[RuleResult, ...]:
    """Every rule, in :data:`~control_service.state.ROLLBACK_RULES` order."""
    return (error_rate(t, s), latency_p95(t, s), consecutive_timeouts(t, s), health(t, s))
