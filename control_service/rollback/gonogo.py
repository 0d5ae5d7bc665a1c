"""The go/no-go gate as a service: gathers the gate's inputs (stats windows, the last golden run,
GPU telemetry), evaluates :mod:`~control_service.rollback.gate`, and guards promotion to
PHASE_PRIMARY with it.

GPU telemetry is a seam: any :class:`VramSource` (the GPU issue implements one over NVML);
without one the ``vram`` criterion is INCONCLUSIVE ("no GPU telemetry"), so the gate is never
GO and promotion to PRIMARY needs ``force`` with a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from clients.gen.llmgateway.v1 import common_pb2
from control_service import phases
from control_service.controller import Controller
from control_service.errors import TransitionError
from control_service.rollback import criteria_semantic, gate
from control_service.rollback.criteria_semantic import MeaningThresholds
from control_service.rollback.golden import GoldenRun
from control_service.rollback.golden_runner import GoldenRunner
from control_service.rollback.meaning import MeaningSource
from control_service.state import ChangeMeta, DesiredState, Snapshot, with_migration
from control_service.stats_windows import StatsWindows


class VramSource(Protocol):
    """GPU memory telemetry for the ``vram`` criterion."""

    async def vram(self, window_s: float) -> gate.VramObservation | None:
        """What was seen over (up to) the last ``window_s`` seconds; None: no telemetry."""
        ...


class GoNoGo:
    def __init__(
        self,
        stats: StatsWindows,
        thresholds: gate.GateThresholds,
        window_s: float,
        golden: GoldenRunner | None = None,
        vram: VramSource | None = None,
        clock: Callable[[], float] = time.time,
        meaning: MeaningSource | None = None,
        meaning_thresholds: MeaningThresholds | None = None,
        structured: Callable[[float], dict[int, tuple[int, int]]] | None = None,
    ) -> None:
        """``structured``: per engine, (schema-valid, total) JSON answers of mirrored pairs over
        a window (``ShadowStore.schema_validity``)."""
        self._structured = structured
        self._stats = stats
        self.thresholds = thresholds
        self.window_s = window_s
        self._golden = golden
        self._vram = vram
        self._clock = clock
        # The meaning criteria (semantic similarity, judge, embedding parity); None: not judged.
        self._meaning = meaning
        self.meaning_thresholds = meaning_thresholds or MeaningThresholds()
        self.last_golden: GoldenRun | None = None
        self._golden_task: asyncio.Task[GoldenRun] | None = None

    async def run_golden(self) -> GoldenRun:
        """Run the golden queries now (concurrent callers share one run)."""
        if self._golden is None:
            run = GoldenRun(self._clock(), problem="golden queries are not configured")
            self.last_golden = run
            return run
        if self._golden_task is None or self._golden_task.done():
            self._golden_task = asyncio.create_task(self._golden.run(), name="golden-queries")
        run = await asyncio.shield(self._golden_task)
        self.last_golden = run
        return run

    def inputs(
        self, golden: GoldenRun | None, vram: gate.VramObservation | None
    ) -> gate.GateInputs:
        now = self._clock()
        since = now - self.window_s
        both = self._stats.merged(since, shadow=None)
        shadow = self._stats.merged(since, shadow=True)
        mirrored = [agg for (provider, _), agg in shadow.items() if provider == "vllm"]
        return gate.GateInputs(
            window_seconds=self.window_s,
            now=now,
            vllm={task: agg for (provider, task), agg in both.items() if provider == "vllm"},
            vllm_shadow=StatsWindows.total(mirrored) if mirrored else None,
            golden=golden,
            vram=vram,
            extra=(
                criteria_semantic.evaluate(
                    self.meaning_thresholds, self._meaning.inputs(self.window_s)
                )
                if self._meaning is not None
                else ()
            ),
            structured=self._structured_validity(),
        )

    def _structured_validity(self) -> gate.StructuredValidity | None:
        if self._structured is None:
            return None
        counts = self._structured(self.window_s)
        v = counts.get(common_pb2.PROVIDER_VLLM, (0, 0))
        o = counts.get(common_pb2.PROVIDER_OLLAMA, (0, 0))
        return gate.StructuredValidity(v[0], v[1], o[0], o[1])

    async def evaluate(self, run_golden: bool = False) -> gate.GateResult:
        golden = await self.run_golden() if run_golden else self.last_golden
        vram = await self._vram.vram(self.thresholds.vram_window_s) if self._vram else None
        return gate.evaluate(self.thresholds, self.inputs(golden, vram))

    async def promote(
        self, controller: Controller, full: bool, force: bool, meta: ChangeMeta
    ) -> Snapshot:
        """Promote, refusing the step into PHASE_PRIMARY unless the gate is GO or the operator
        forces it with a reason (audited, with the gate's criteria as evidence)."""
        current = controller.current.state.migration
        # An illegal promotion fails here, with the phase machine's reason, before any gate.
        target = phases.promote(current, full)
        if not gate.reaches_primary(current, target):
            return await controller.change(
                "promote", meta, _guarded(full, checked=False), evidence=None
            )
        result = await self.evaluate()
        reason = gate.promotion_reason(result, force, meta.reason)
        return await controller.change(
            "promote",
            replace(meta, reason=reason),
            _guarded(full, checked=True),
            evidence={"gate": result.evidence(), "forced": result.verdict is not gate.Verdict.GO},
        )


def _guarded(full: bool, checked: bool) -> Callable[[DesiredState], DesiredState]:
    """The promotion, re-checked inside the store transaction: if the state moved since the gate
    was (not) evaluated so that this promotion now enters PRIMARY unchecked, refuse."""

    def fn(s: DesiredState) -> DesiredState:
        after = phases.promote(s.migration, full)
        if not checked and gate.reaches_primary(s.migration, after):
            raise TransitionError(
                "the migration moved while promoting; promote again to evaluate the gate"
            )
        return with_migration(s, after)

    return fn
