"""The rollback controller: a control loop in the control service that evaluates the rollback
rules every ``evaluation_interval_s`` and acts on the decision.

Each step probes both engines (feeding the health hysteresis), reads vLLM's answered traffic
from the stats windows (every router's reports merged; only reports made under the version
where the traffic placement last changed, so data from before a phase change or a retry never
counts), evaluates :mod:`~control_service.rollback.rules`, asks
:mod:`~control_service.rollback.decide` what to do, and does it through the controller: a
rollback or a freeze is a new version (pushed to every router at once by the hub, like any
change) whose audit event carries the evidence; the other decisions are audit events filed
under the current version.

The loop never dies (Ray Serve's controller): each step is wrapped, logged and timed; a failed
or hung step is logged and the next one runs on schedule. Writes are compare-and-set on the
version the step evaluated, so an operator's change in between wins and the step is simply
re-evaluated on the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from control_service import phases
from control_service.controller import Controller
from control_service.errors import TransitionError, VersionConflict
from control_service.health import EngineProber, Health
from control_service.rollback import decide as dec
from control_service.rollback import rules
from control_service.rollback.agreement import require_agreement
from control_service.rollback.probes import HealthTracker
from control_service.state import ChangeMeta, DesiredState, Snapshot, with_migration
from control_service.stats_windows import StatsWindows
from control_service.store import Decision as DecisionEvent

log = logging.getLogger(__name__)


class RollbackLoop:
    def __init__(
        self,
        controller: Controller,
        stats: StatsWindows,
        prober: EngineProber,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        step_timeout_s: float | None = None,
    ) -> None:
        self._controller = controller
        self._stats = stats
        self._prober = prober
        self.interval_s = interval_s
        self._clock = clock
        self._step_timeout_s = step_timeout_s or max(10.0, 5 * interval_s)
        self.health = HealthTracker()
        self._placement: tuple[object, ...] | None = None
        self.epoch_version = 0
        self._episode = ""
        self._once: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.last_decision: dec.Decision | None = None
        self.steps = 0
        self.failed_steps = 0
        self.last_step_ms = 0.0
        # Called after each step with its decision (benchmarks, tests).
        self.observers: list[Callable[[dec.Decision], None]] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rollback-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # The first evaluation one interval after start: nothing can have happened before.
        next_at = loop.time() + self.interval_s
        await asyncio.sleep(self.interval_s)
        while True:
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(self._step_timeout_s):
                    await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # the one broad except: the loop must outlive any step
                self.failed_steps += 1
                log.exception("rollback evaluation failed; the next one runs on schedule")
            self.steps += 1
            self.last_step_ms = (time.perf_counter() - t0) * 1000
            if self.last_step_ms > self.interval_s * 1000:
                log.warning(
                    "rollback evaluation took %.0f ms, longer than its %.0f ms interval",
                    self.last_step_ms,
                    self.interval_s * 1000,
                )
            else:
                log.debug("rollback evaluation took %.1f ms", self.last_step_ms)
            next_at = max(next_at + self.interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())

    # --- one evaluation --------------------------------------------------------------------

    async def probe(self, snap: Snapshot) -> None:
        """One fresh probe of each engine into the health hysteresis."""
        t = snap.state.flags.rollback
        now = self._clock()
        for c in await self._prober.probe_now():
            engine = c.name.removeprefix("engine/")
            self.health.observe(
                engine,
                c.status is Health.OK,
                c.detail,
                now,
                t.health_failure_threshold,
                t.health_success_threshold,
            )

    def signals(self, snap: Snapshot, now: float, without: str | None = None) -> rules.Signals:
        """What the rules read now (also used by benchmarks to see a condition being met);
        ``without``: leaving one router's reports out (the agreement rule)."""
        t = snap.state.flags.rollback
        since = now - t.window_seconds
        merged = self._stats.merged(
            since, min_config_version=self.epoch_version, shadow=False, without=without
        )
        timeouts = self._stats.consecutive_timeouts(
            "vllm", since, min_config_version=self.epoch_version
        )
        timeouts.pop(without or "", None)
        return rules.Signals(
            window_seconds=t.window_seconds,
            config_version=snap.version,
            min_config_version=self.epoch_version,
            vllm={task: agg for (provider, task), agg in merged.items() if provider == "vllm"},
            consecutive_timeouts=timeouts,
            vllm_health=self.health.view("vllm"),
        )

    def _track_placement(self, snap: Snapshot) -> None:
        placement = dec.placement(snap.state.migration)
        if placement != self._placement:
            self._placement = placement
            self.epoch_version = snap.version
            self._episode = ""

    async def step(self) -> dec.Decision:
        snap = self._controller.current
        await self.probe(snap)
        snap = self._controller.current
        self._track_placement(snap)
        now = self._clock()
        m, t = snap.state.migration, snap.state.flags.rollback
        if dec.watched(m):
            signals = self.signals(snap, now)
            results = require_agreement(
                rules.evaluate(t, signals),
                sorted(signals.routers),
                lambda router: rules.evaluate(t, self.signals(snap, now, without=router)),
                frozenset({"consecutive_timeouts"} if t.timeout_routers_required >= 2 else ()),
            )
            d = dec.decide(m, t, results, self.health.view("ollama"), now, self.epoch_version)
        else:
            signals = None
            d = dec.Decision(dec.Action.NONE)
        if d.action is not dec.Action.NONE and signals is not None:
            await self._act(snap, d, signals, now)
        else:
            self._episode = ""
        self.last_decision = d
        for observer in self.observers:
            observer(d)
        return d

    async def _act(
        self, snap: Snapshot, d: dec.Decision, signals: rules.Signals, now: float
    ) -> None:
        m = snap.state.migration
        evidence = dec.evidence(
            d,
            m=m,
            config_version=snap.version,
            min_config_version=signals.min_config_version,
            window_seconds=signals.window_seconds,
            vllm=self.health.view("vllm"),
            ollama=self.health.view("ollama"),
            decided_at=now,
        )
        new_episode = d.key != self._episode and d.key not in self._once
        meta = ChangeMeta(dec.ACTOR, d.reason, snap.version)
        try:
            if d.action is dec.Action.ROLLBACK:
                log.warning("rolling back v%d: %s", snap.version, d.reason)
                await self._change("rollback", meta, evidence, _rollback(d.reason, now))
            elif d.action is dec.Action.FREEZE:
                if d.pause:
                    log.error("freezing v%d: %s", snap.version, d.reason)
                    await self._change("freeze", meta, evidence, _freeze(d.reason))
                if new_episode:
                    await self._record("alert", d.reason, evidence)
            elif new_episode:
                log.warning("%s at v%d: %s", d.action.value, snap.version, d.reason)
                await self._record(d.action.value, d.reason, evidence)
        except VersionConflict:
            # Someone changed the state since this step read it: judge the new state next tick.
            log.info(
                "state changed during the rollback evaluation of v%d; re-evaluating", snap.version
            )
            self._episode = ""
            return
        except TransitionError as exc:
            log.warning("rollback controller could not %s: %s", d.action.value, exc)
            self._episode = ""
            return
        self._episode = d.key
        if d.once:
            self._once.add(d.key)

    async def _change(
        self,
        action: str,
        meta: ChangeMeta,
        evidence: dict[str, Any],
        fn: Callable[[DesiredState], DesiredState],
    ) -> Snapshot:
        return await self._controller.change(action, meta, fn, evidence=evidence)

    async def _record(self, action: str, reason: str, evidence: dict[str, Any]) -> None:
        await self._controller.record(DecisionEvent(dec.ACTOR, action, reason, evidence))


def _rollback(reason: str, now: float) -> Callable[[DesiredState], DesiredState]:
    def fn(s: DesiredState) -> DesiredState:
        return with_migration(s, phases.automatic_rollback(s.migration, reason, now))

    return fn


def _freeze(reason: str) -> Callable[[DesiredState], DesiredState]:
    def fn(s: DesiredState) -> DesiredState:
        return with_migration(s, phases.pause(s.migration, reason))

    return fn
