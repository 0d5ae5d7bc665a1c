"""The go/no-go gate for promotion to PHASE_PRIMARY (seed 7.3). Pure logic over plain data.

* ``golden_queries``: GO when every golden query passes on vLLM, NO-GO when any fails;
  INCONCLUSIVE when they never ran, no file is configured or the router is unreachable.
* ``latency_p95``: GO under 5 s, NO-GO over 10 s; INCONCLUSIVE in between or with fewer than
  ``min_requests`` samples.
* ``shadow_error_rate``: GO under 1 %, NO-GO over 5 %; INCONCLUSIVE in between or with too few
  mirrored requests.
* ``vram``: GO when stable over the observation window without OOM, NO-GO on any OOM;
  INCONCLUSIVE without GPU telemetry, observed too briefly, or growing.
* ``structured_output_validity``: vLLM's JSON-Schema validity rate (mirrored JSON requests
  where both engines answered) must be at least Ollama's: GO when it is, NO-GO when it is lower;
  INCONCLUSIVE with fewer than ``min_structured_pairs`` such pairs. GO when no structured
  request was mirrored at all (a workload without JSON output has nothing to hold on).

Latency is measured like the rollback rule: vLLM's time to first token for the generate tasks
and the whole call for Embed, from merged histograms of all routers (answered and mirrored
requests: vLLM's latency whether or not its answer was used). The shadow error rate counts only
mirrored requests (``shadow=True``); in PHASE_SPLIT keep ``shadow_during_split`` on to have
them. The overall verdict is GO only when every criterion is GO, NO-GO when any is NO-GO, else
INCONCLUSIVE; INCONCLUSIVE holds promotion like NO-GO does (missing data never promotes).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control_service.errors import FieldViolation, InvalidChange, TransitionError
from control_service.rollback.golden import GoldenRun
from control_service.rollback.rules import EMBED_TASK, merged_histogram
from control_service.state import Migration, Phase
from control_service.stats_windows import Aggregate, Histogram
from llmcore.vocabulary import TaskName


class Verdict(enum.Enum):
    GO = "GO"
    NO_GO = "NO-GO"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    verdict: Verdict
    value: str
    threshold: str
    detail: str = ""

    def evidence(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class GateThresholds:
    """Seed 7.3's numbers; ``min_requests`` is how many samples make a measurement."""

    latency_go_ms: float = 5000.0
    latency_no_go_ms: float = 10000.0
    shadow_error_go: float = 0.01
    shadow_error_no_go: float = 0.05
    min_requests: int = 50
    # "VRAM usage stable over 24 hours": how long, and how much growth still counts as stable
    # (a share of the GPU's memory).
    vram_window_s: float = 86400.0
    vram_max_growth: float = 0.05
    min_structured_pairs: int = 20


@dataclass(frozen=True, slots=True)
class StructuredValidity:
    """Schema-valid JSON answers per engine over the same mirrored pairs."""

    vllm_valid: int = 0
    vllm_total: int = 0
    ollama_valid: int = 0
    ollama_total: int = 0


@dataclass(frozen=True, slots=True)
class VramObservation:
    """What a GPU telemetry source saw over ``covered_s`` seconds (see ``gonogo.VramSource``)."""

    covered_s: float
    samples: int
    first_used_bytes: int
    last_used_bytes: int
    peak_used_bytes: int
    total_bytes: int
    oom_events: int = 0


@dataclass(frozen=True, slots=True)
class GateInputs:
    """Everything the gate judges. ``vllm`` is vLLM's merged aggregate per task (answered and
    mirrored requests), ``vllm_shadow`` its mirrored requests only."""

    window_seconds: float
    now: float
    vllm: Mapping[TaskName, Aggregate] = field(default_factory=dict)
    vllm_shadow: Aggregate | None = None
    golden: GoldenRun | None = None
    vram: VramObservation | None = None
    structured: StructuredValidity | None = None
    # Criteria computed by their own modules (``criteria_semantic``: meaning), judged like these.
    extra: tuple[Criterion, ...] = ()


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: Verdict
    criteria: tuple[Criterion, ...]

    def summary(self) -> str:
        """``NO-GO (latency_p95 NO-GO: ...; vram INCONCLUSIVE: no GPU telemetry)``."""
        off = [c for c in self.criteria if c.verdict is not Verdict.GO]
        if not off:
            return self.verdict.value
        parts = "; ".join(f"{c.name} {c.verdict.value}: {c.detail or c.value}" for c in off)
        return f"{self.verdict.value} ({parts})"

    def evidence(self) -> dict[str, Any]:
        return {"verdict": self.verdict.value, "criteria": [c.evidence() for c in self.criteria]}


def overall(criteria: tuple[Criterion, ...]) -> Verdict:
    verdicts = {c.verdict for c in criteria}
    if Verdict.NO_GO in verdicts:
        return Verdict.NO_GO
    if verdicts == {Verdict.GO}:
        return Verdict.GO
    return Verdict.INCONCLUSIVE


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def golden_queries(run: GoldenRun | None, now: float) -> Criterion:
    threshold = "all pass on vLLM"
    if run is None:
        return Criterion(
            "golden_queries",
            Verdict.INCONCLUSIVE,
            "not run",
            threshold,
            "the golden queries have not run yet (llmctl gonogo --run-golden)",
        )
    if run.problem:
        return Criterion("golden_queries", Verdict.INCONCLUSIVE, "no run", threshold, run.problem)
    if not run.results:
        return Criterion("golden_queries", Verdict.INCONCLUSIVE, "0 queries", threshold, "empty")
    passed = len(run.results) - len(run.failed)
    value = f"{passed}/{len(run.results)} passed ({_ago(now - run.at)})"
    if run.failed:
        detail = "; ".join(
            f"{r.name}: {r.error or ', '.join(r.failures)}" for r in run.failed[:5]
        ) + (f"; +{len(run.failed) - 5} more" if len(run.failed) > 5 else "")
        return Criterion("golden_queries", Verdict.NO_GO, value, threshold, detail)
    return Criterion("golden_queries", Verdict.GO, value, threshold)


def _band(value: float, go: float, no_go: float) -> Verdict:
    if value < go:
        return Verdict.GO
    if value > no_go:
        return Verdict.NO_GO
    return Verdict.INCONCLUSIVE


def _ms(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.0f} ms"


def latency_p95(t: GateThresholds, inp: GateInputs) -> Criterion:
    ttft = merged_histogram([a.ttft_ms for task, a in inp.vllm.items() if task != EMBED_TASK])
    embed = inp.vllm.get(EMBED_TASK)
    parts: list[tuple[str, Histogram | None]] = [
        ("generate TTFT", ttft),
        ("embed total", embed.total_ms if embed else None),
    ]
    verdicts: list[Verdict] = []
    values: list[str] = []
    notes: list[str] = []
    for label, hist in parts:
        n = hist.total if hist is not None else 0
        p95 = hist.quantile(0.95) if hist is not None else None
        if p95 is None or n < t.min_requests:
            if n:
                notes.append(f"{label}: {n} samples < {t.min_requests}")
            continue
        values.append(f"{label} p95 {_ms(p95)} ({n} samples)")
        verdicts.append(_band(p95, t.latency_go_ms, t.latency_no_go_ms))
    threshold = f"GO < {t.latency_go_ms:g} ms, NO-GO > {t.latency_no_go_ms:g} ms"
    if not verdicts:
        detail = "; ".join(notes) or "no vLLM traffic in the window"
        return Criterion(
            "latency_p95", Verdict.INCONCLUSIVE, "no data", threshold, f"{detail}: hold"
        )
    if Verdict.NO_GO in verdicts:
        verdict = Verdict.NO_GO
    elif Verdict.INCONCLUSIVE in verdicts:
        verdict = Verdict.INCONCLUSIVE
        notes.append("between the GO and NO-GO lines")
    else:
        verdict = Verdict.GO
    return Criterion(
        "latency_p95",
        verdict,
        "; ".join(values),
        threshold,
        f"over the last {inp.window_seconds:g}s" + (f"; {'; '.join(notes)}" if notes else ""),
    )


def shadow_error_rate(t: GateThresholds, inp: GateInputs) -> Criterion:
    agg = inp.vllm_shadow
    n = agg.requests if agg else 0
    threshold = f"GO < {t.shadow_error_go:.0%}, NO-GO > {t.shadow_error_no_go:.0%}"
    if agg is None or n < t.min_requests:
        return Criterion(
            "shadow_error_rate",
            Verdict.INCONCLUSIVE,
            f"{n} mirrored requests",
            threshold,
            f"fewer than {t.min_requests} mirrored vLLM requests in the last "
            f"{inp.window_seconds:g}s (shadow mode, or shadow_during_split in SPLIT): hold",
        )
    rate = agg.errors / n
    verdict = _band(rate, t.shadow_error_go, t.shadow_error_no_go)
    return Criterion(
        "shadow_error_rate",
        verdict,
        f"{rate:.2%} ({agg.errors}/{n})",
        threshold,
        "between the GO and NO-GO lines" if verdict is Verdict.INCONCLUSIVE else "",
    )


def vram(t: GateThresholds, obs: VramObservation | None) -> Criterion:
    threshold = (
        f"stable (growth <= {t.vram_max_growth:.0%} of total) over "
        f"{t.vram_window_s / 3600:g}h, no OOM"
    )
    if obs is None:
        return Criterion("vram", Verdict.INCONCLUSIVE, "n/a", threshold, "no GPU telemetry")
    total = max(obs.total_bytes, 1)
    growth = (obs.last_used_bytes - obs.first_used_bytes) / total
    value = (
        f"peak {obs.peak_used_bytes / total:.0%}, growth {growth:+.1%}, {obs.oom_events} OOM "
        f"over {obs.covered_s / 3600:.1f}h ({obs.samples} samples)"
    )
    if obs.oom_events:
        return Criterion("vram", Verdict.NO_GO, value, threshold, "OOM errors seen")
    if obs.samples < 2 or obs.covered_s < t.vram_window_s:
        return Criterion("vram", Verdict.INCONCLUSIVE, value, threshold, "observed too briefly")
    if growth > t.vram_max_growth:
        return Criterion("vram", Verdict.INCONCLUSIVE, value, threshold, "usage is growing")
    return Criterion("vram", Verdict.GO, value, threshold)


def structured_output_validity(t: GateThresholds, inp: GateInputs) -> Criterion:
    s = inp.structured or StructuredValidity()
    name = "structured_output_validity"
    threshold = "vLLM's schema-valid rate >= Ollama's"
    n = min(s.vllm_total, s.ollama_total)
    if s.vllm_total == 0 and s.ollama_total == 0:
        return Criterion(name, Verdict.GO, "no JSON pairs", threshold, "no structured requests")
    vllm = s.vllm_valid / s.vllm_total if s.vllm_total else 0.0
    ollama = s.ollama_valid / s.ollama_total if s.ollama_total else 0.0
    value = (
        f"vLLM {vllm:.1%} ({s.vllm_valid}/{s.vllm_total}), "
        f"Ollama {ollama:.1%} ({s.ollama_valid}/{s.ollama_total})"
    )
    if n < t.min_structured_pairs:
        return Criterion(
            name,
            Verdict.INCONCLUSIVE,
            value,
            threshold,
            f"fewer than {t.min_structured_pairs} mirrored JSON pairs: hold",
        )
    if vllm >= ollama:
        return Criterion(name, Verdict.GO, value, threshold)
    return Criterion(name, Verdict.NO_GO, value, threshold, "vLLM's JSON is less often valid")


def evaluate(t: GateThresholds, inp: GateInputs) -> GateResult:
    criteria = (
        golden_queries(inp.golden, inp.now),
        latency_p95(t, inp),
        shadow_error_rate(t, inp),
        vram(t, inp.vram),
        *inp.extra,
        structured_output_validity(t, inp),
    )
    return GateResult(overall(criteria), criteria)


def reaches_primary(before: Migration, after: Migration) -> bool:
    """Whether a promotion from ``before`` to ``after`` enters PHASE_PRIMARY (the gated step)."""
    return after.phase is Phase.PRIMARY and before.phase is not Phase.PRIMARY


def promotion_reason(gate: GateResult, force: bool, reason: str) -> str:
    """The audit reason of a promotion to PRIMARY with this gate result, or why it is refused:
    :class:`TransitionError` (FAILED_PRECONDITION) while the gate is not GO and not forced,
    :class:`InvalidChange` for a force without a reason."""
    if gate.verdict is Verdict.GO:
        return reason
    if not force:
        raise TransitionError(
            f"cannot promote to PHASE_PRIMARY: the go/no-go gate says {gate.summary()}; "
            "fix the criteria, or force with a reason"
        )
    if not reason.strip():
        raise InvalidChange([FieldViolation("meta.reason", "force needs a reason (it is audited)")])
    return f"forced past the go/no-go gate, {gate.summary()}: {reason}"
