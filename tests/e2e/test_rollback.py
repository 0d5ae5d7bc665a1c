"""Automatic rollback end to end: simulated Ollama and vLLM (real HTTP on port 0), real routers
with their real providers and config subscribers, a real control service probing the simulators
and evaluating the rules every 50 ms over a 10 s window.

What the routers report today: the outcome of each *request*, attributed to the engine that
answered it (or, when every engine failed, to the failing one). A vLLM failure before the first
token that the per-request fallback to Ollama covers is therefore reported as an Ollama success:
such faults leave vLLM's window empty (the rules hold) until routers report failed attempts too
(see ``test_faults_hidden_by_the_fallback_roll_back``). The error-rate and timeout scenarios
here use faults that surface after the first token, which the router cannot retry elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import RouterClient, RouterError
from control_service.rollback import decide as dec
from control_service.rollback.loop import RollbackLoop
from control_service.state import RolloutStatus
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings
from tests.control.conftest import Control, start

ROLLBACK = {
    "error_rate": 0.05,
    "latency_p95_ms": 150,
    "embed_latency_p95_ms": 1000,
    "consecutive_timeouts": 3,
    "window_seconds": 10,
    "min_requests": 8,
    "cooldown_seconds": 0,
    "max_automatic_rollbacks": 5,
    "timeout_routers_required": 2,
    "health_failure_threshold": 2,
    "health_success_threshold": 1,
}


def _meta(reason: str = "e2e") -> control_pb2.ChangeMeta:
    return control_pb2.ChangeMeta(actor="operator", reason=reason)


@dataclass
class Load:
    """Requests sent through every router until stopped; each outcome is kept with the time its
    request started."""

    outcomes: list[tuple[float, str]] = field(default_factory=list)  # (started, outcome)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, clients: dict[str, RouterClient], per_router: int = 4) -> None:
        for rid, client in clients.items():
            for worker in range(per_router):
                self._tasks.append(asyncio.create_task(self._run(rid, client, worker)))

    async def _run(self, rid: str, client: RouterClient, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.monotonic()
            stream = client.generate("hello there", routing_key=f"{rid}-{worker}-{i}", max_tokens=8)
            try:
                r = await stream.collect()
            except RouterError as err:
                code = err.code.name if err.code is not None else err.status_code.name
                self.outcomes.append((started, f"error:{code}"))
            else:
                fallback = "+fallback" if r.fallback else ""
                self.outcomes.append((started, f"{r.provider.value}{fallback}"))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def started_since(self, t: float) -> Counter[str]:
        return Counter(o for started, o in self.outcomes if started >= t)

    @property
    def failed(self) -> int:
        return sum(1 for _, o in self.outcomes if o.startswith("error:"))


@dataclass
class Fleet:
    ollama: RunningSimulator
    vllm: RunningSimulator
    control: Control
    routers: list[RouterApp]
    clients: dict[str, RouterClient]

    @property
    def stub(self) -> Any:
        return self.control.stub

    @property
    def loop(self) -> RollbackLoop:
        assert self.control.app.rollback is not None
        return self.control.app.rollback

    @property
    def version(self) -> int:
        return self.control.app.controller.current.version

    @property
    def status(self) -> RolloutStatus:
        return self.control.app.controller.current.state.migration.status

    async def until(self, predicate: Callable[[], bool], within: float = 8.0) -> None:
        """Wait on the hub's changes (publish, ACK, ...) until ``predicate`` holds."""
        async with asyncio.timeout(within):
            await self.control.app.hub.wait_for(predicate)

    async def converged(self, version: int | None = None) -> int:
        """Every router ACKed ``version`` (default: the current one)."""
        v = self.version if version is None else version
        await self.until(lambda: len(self.control.app.hub.synced(v)) == len(self.routers))
        assert {r.config.current.version for r in self.routers} == {v}
        return v

    async def steps(self, n: int, within: float = 8.0) -> list[dec.Decision]:
        """The next ``n`` decisions of the rollback loop."""
        seen: list[dec.Decision] = []
        done = asyncio.Event()

        def observe(d: dec.Decision) -> None:
            seen.append(d)
            if len(seen) >= n:
                done.set()

        self.loop.observers.append(observe)
        try:
            async with asyncio.timeout(within):
                await done.wait()
        finally:
            self.loop.observers.remove(observe)
        return seen

    async def decision(self, action: dec.Action, within: float = 8.0) -> dec.Decision:
        """Wait for the rollback loop to decide ``action``."""
        found: list[dec.Decision] = []
        done = asyncio.Event()

        def observe(d: dec.Decision) -> None:
            if d.action is action:
                found.append(d)
                done.set()

        self.loop.observers.append(observe)
        try:
            async with asyncio.timeout(within):
                await done.wait()
        finally:
            self.loop.observers.remove(observe)
        return found[0]

    async def set_rollback(self, **changes: Any) -> None:
        fields = {**ROLLBACK, **changes}
        flags = control_pb2.Flags(rollback=control_pb2.RollbackThresholds(**fields))
        await self.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=_meta("rollback thresholds"),
                flags=flags,
                update_mask=field_mask_pb2.FieldMask(paths=["rollback"]),
            )
        )

    async def split(self, weight: int = 50) -> int:
        await self.stub.Promote(control_pb2.PromoteRequest(meta=_meta("shadow")))
        await self.stub.SetWeight(
            control_pb2.SetWeightRequest(meta=_meta("split"), weight_percent=weight)
        )
        return await self.converged()

    async def events(self, n: int = 20) -> list[control_pb2.AuditEvent]:
        return list((await self.stub.ListEvents(control_pb2.ListEventsRequest(page_size=n))).events)

    async def rolled_back(self, within: float = 8.0) -> int:
        """Wait for the automatic rollback and for every router to run it; its version."""
        await self.until(lambda: self.status is RolloutStatus.ABORTED, within)
        return await self.converged()


@pytest.fixture
async def fleet_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Fleet] = []

    async def make(
        routers: int = 2,
        read_timeout_s: float = 5.0,
        router: dict[str, Any] | None = None,
        **rollback: Any,
    ) -> Fleet:
        """``router``: extra RouterSettings; ``rollback``: threshold changes."""
        ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA))
        # 20 ms between tokens: a fault "after N tokens" then reaches the router in a later
        # read than the first token even on a busy machine (one read holding both would fail
        # before the first token, where the router falls back).
        vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, itl_ms=20))
        control = await start(
            tmp_path / f"control{len(made)}.db",
            transport=httpx.AsyncHTTPTransport(),
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            evaluation_interval_s=0.05,
            stats_slot_s=0.5,
            probe_timeout_s=0.5,
        )
        apps = [
            await start_router(
                RouterSettings(
                    host="127.0.0.1",
                    port=0,
                    ollama_base_url=ollama.base_url,
                    vllm_base_url=vllm.base_url,
                    control_address=f"127.0.0.1:{control.app.port}",
                    router_id=f"r{i}",
                    config_cache_path=tmp_path / f"f{len(made)}-r{i}.snapshot",
                    stats_report_interval_s=0.05,
                    retry_base_delay_s=0.001,
                    retry_max_delay_s=0.002,
                    read_timeout_s=read_timeout_s,
                    # The routers' own circuit breakers would hide vLLM after a few failures;
                    # out of the way here, so each scenario shows the control plane alone.
                    breaker_failure_threshold=1000,
                    grace_period_s=0.5,
                    **(router or {}),
                )
            )
            for i in range(routers)
        ]
        clients = {
            f"r{i}": RouterClient(f"127.0.0.1:{a.port}", timeout=10) for i, a in enumerate(apps)
        }
        fleet = Fleet(ollama, vllm, control, apps, clients)
        made.append(fleet)
        await fleet.set_rollback(**rollback)
        await fleet.converged()
        return fleet

    yield make
    for f in made:
        for c in f.clients.values():
            await c.close()
        for r in f.routers:
            await r.stop(0)
        await f.control.close()
        await f.ollama.stop()
        await f.vllm.stop()


def _evidence(event: control_pb2.AuditEvent) -> dict[str, Any]:
    evidence: dict[str, Any] = json.loads(event.after_json)["evidence"]
    return evidence


def _rule(evidence: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in evidence["rules"] if r["rule"] == name)
    return found


async def _assert_rollback_event(fleet: Fleet, version: int, rule: str) -> dict[str, Any]:
    event = (await fleet.events(1))[0]
    assert (event.version, event.actor, event.action) == (
        version,
        "rollback-controller",
        "rollback",
    )
    assert event.reason.startswith(f"automatic rollback: {rule}: ")
    evidence = _evidence(event)
    assert evidence["acting_rules"] == [rule]
    assert _rule(evidence, rule)["outcome"] == "fail"
    assert evidence["window_seconds"] == 10
    assert evidence["config_version"] == version - 1
    assert (evidence["phase"], evidence["split_weight_percent"]) == ("SPLIT", 50)
    snap = fleet.control.app.controller.current.state.migration
    assert (snap.aborted_weight_percent, snap.automatic_rollbacks) == (50, 1)
    assert snap.status_reason == event.reason
    return evidence


async def _only_ollama_after(fleet: Fleet, load: Load, requests: int = 16) -> None:
    """Once every router runs the rollback, nothing reaches vLLM and nothing fails (requests
    already in flight on vLLM finish there)."""
    now = time.monotonic()
    await fleet.until(lambda: load.started_since(now).total() >= requests, within=8)
    after = load.started_since(now)
    assert set(after) == {"ollama"}, after


# --- one scenario per trigger ---------------------------------------------------------------


async def test_latency_fault_rolls_back_with_no_failed_request(
    fleet_factory: Callable[..., Any],
) -> None:
    fleet: Fleet = await fleet_factory()
    await fleet.split()
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.added_latency_ms = 300
    version = await fleet.rolled_back()
    evidence = await _assert_rollback_event(fleet, version, "latency_p95")
    latency = _rule(evidence, "latency_p95")
    assert latency["value"] > 150
    assert latency["threshold"] == 150
    assert latency["samples"] >= 8
    await _only_ollama_after(fleet, load)
    await load.stop()
    assert load.failed == 0
    assert Counter(o for _, o in load.outcomes)["vllm"] > 0  # vLLM answered, slowly, meanwhile


async def test_health_fault_rolls_back_with_no_failed_request(
    fleet_factory: Callable[..., Any],
) -> None:
    fleet: Fleet = await fleet_factory()
    await fleet.split()
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.health_failing = True
    version = await fleet.rolled_back()
    evidence = await _assert_rollback_event(fleet, version, "health")
    assert evidence["engines"]["vllm"]["state"] == "unhealthy"
    assert evidence["engines"]["ollama"]["state"] == "healthy"
    assert "HTTP 503" in _rule(evidence, "health")["detail"]
    await _only_ollama_after(fleet, load)
    await load.stop()
    assert load.failed == 0


async def test_errors_after_the_first_token_roll_back(fleet_factory: Callable[..., Any]) -> None:
    fleet: Fleet = await fleet_factory()
    await fleet.split()
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.midstream_error_after_tokens = 3
    version = await fleet.rolled_back()
    evidence = await _assert_rollback_event(fleet, version, "error_rate")
    errors = _rule(evidence, "error_rate")
    assert errors["value"] > 0.05
    assert errors["samples"] >= 8
    # A stream that failed after its first token continues on Ollama (continuation failover),
    # and the failure still counts against vLLM; once every router runs the rollback, nothing
    # reaches vLLM.
    await _only_ollama_after(fleet, load)
    await load.stop()


async def test_stalled_streams_roll_back_when_enough_routers_agree(
    fleet_factory: Callable[..., Any],
) -> None:
    fleet: Fleet = await fleet_factory(read_timeout_s=0.3)
    # Only the timeout rule may fire (a timeout is an error too).
    await fleet.set_rollback(latency_p95_ms=60_000, error_rate=1.0)
    await fleet.split()
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.stall_after_tokens = 2
    version = await fleet.rolled_back()
    evidence = await _assert_rollback_event(fleet, version, "consecutive_timeouts")
    timeouts = _rule(evidence, "consecutive_timeouts")
    assert timeouts["value"] >= 3
    assert "r0 (" in timeouts["detail"]
    assert "r1 (" in timeouts["detail"]
    assert "2 of 2 reporting required" in timeouts["detail"]
    await _only_ollama_after(fleet, load)
    await load.stop()


@pytest.mark.parametrize(
    "fault",
    [{"error_rate": 1.0, "error_status": 503}, {"stall_after_tokens": 0}],
    ids=["errors", "timeouts-before-first-token"],
)
async def test_faults_hidden_by_the_fallback_roll_back(
    fleet_factory: Callable[..., Any], fault: dict[str, Any]
) -> None:
    fleet: Fleet = await fleet_factory(read_timeout_s=0.2)
    await fleet.split()
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.update(fault)
    try:
        await fleet.rolled_back(within=2.0)
    finally:
        await load.stop()
        # What the fallback does achieve: not one failed request, Ollama answering instead.
        assert load.failed == 0
        assert Counter(o for _, o in load.outcomes)["ollama+fallback"] > 0


# --- semantics ------------------------------------------------------------------------------


async def test_too_few_samples_never_roll_back(fleet_factory: Callable[..., Any]) -> None:
    # Continuation off: the mid-stream errors reach the users, who are counted below.
    fleet: Fleet = await fleet_factory(
        routers=1, min_requests=1000, router={"continuation_enabled": False}
    )
    await fleet.split()
    fleet.vllm.faults.midstream_error_after_tokens = 3
    load = Load()
    load.start(fleet.clients, per_router=2)
    await fleet.until(lambda: load.failed >= 10)
    for d in await fleet.steps(3):
        assert d.action is dec.Action.NONE
        err = d.results[0]
        assert err.rule == "error_rate"
        assert err.outcome.value == "inconclusive"
        assert err.samples >= 1
        assert "fewer than min_requests 1000: hold" in err.detail
    await load.stop()
    assert fleet.status is RolloutStatus.ACTIVE


async def test_missing_data_holds_and_pre_change_data_never_triggers(
    fleet_factory: Callable[..., Any],
) -> None:
    fleet: Fleet = await fleet_factory(dry_run_rules=["error_rate"])
    await fleet.split()
    # No traffic at all: every traffic rule holds; vLLM is healthy.
    decisions = await fleet.steps(2)
    outcomes = {r.rule: r.outcome.value for r in decisions[-1].results}
    assert outcomes == {
        "error_rate": "inconclusive",
        "latency_p95": "inconclusive",
        "consecutive_timeouts": "inconclusive",
        "health": "pass",
    }
    # Dry run: vLLM fails, the rule records "would roll back" once and does not act.
    load = Load()
    load.start(fleet.clients)
    fleet.vllm.faults.midstream_error_after_tokens = 3
    await fleet.decision(dec.Action.WOULD_ROLL_BACK)
    await fleet.steps(5)
    await load.stop()
    fleet.vllm.faults.clear()
    dry = [e for e in await fleet.events() if e.action == "would_roll_back"]
    assert len(dry) == 1
    assert dry[0].actor == "rollback-controller"
    assert dry[0].reason.startswith("dry run, not acting: would roll back (error_rate: ")
    assert _evidence(dry[0])["dry_run_rules"] == ["error_rate"]
    assert fleet.status is RolloutStatus.ACTIVE
    # A phase change starts a new window: the failures above were reported under the previous
    # placement and never count, even with the rule live.
    await fleet.stub.SetWeight(control_pb2.SetWeightRequest(meta=_meta(), weight_percent=30))
    await fleet.set_rollback(dry_run_rules=[])
    await fleet.converged()
    for d in await fleet.steps(3):
        assert d.action is dec.Action.NONE
        assert d.results[0].outcome.value == "inconclusive"
    assert fleet.status is RolloutStatus.ACTIVE


async def test_freeze_when_both_engines_fail_then_roll_back_when_ollama_recovers(
    fleet_factory: Callable[..., Any],
) -> None:
    fleet: Fleet = await fleet_factory(routers=1)
    await fleet.split()
    fleet.ollama.faults.health_failing = True
    fleet.vllm.faults.health_failing = True
    await fleet.until(lambda: fleet.status is RolloutStatus.PAUSED)
    await fleet.converged()
    await fleet.steps(3)
    migration = fleet.control.app.controller.current.state.migration
    assert migration.status_reason.startswith("frozen: vLLM fails (health: ")
    assert "the fallback Ollama is unhealthy" in migration.status_reason
    events = await fleet.events(3)
    assert [(e.action, e.actor) for e in events[:2]] == [
        ("alert", "rollback-controller"),
        ("freeze", "rollback-controller"),
    ]
    assert events[0].version == events[1].version  # the alert is filed under the freeze
    assert _evidence(events[0])["engines"]["ollama"]["state"] == "unhealthy"
    # Checks go on while paused: Ollama back, vLLM still failing, the rollback happens.
    fleet.ollama.faults.health_failing = False
    version = await fleet.rolled_back()
    event = (await fleet.events(1))[0]
    assert (event.version, event.action) == (version, "rollback")
    assert _evidence(event)["status"] == "PAUSED"


async def test_sticky_abort_cooldown_and_cap(fleet_factory: Callable[..., Any]) -> None:
    fleet: Fleet = await fleet_factory(routers=1, cooldown_seconds=600, max_automatic_rollbacks=2)
    await fleet.split()
    fleet.vllm.faults.health_failing = True
    first = await fleet.rolled_back()
    # Sticky: it stays aborted, never re-advances by itself, whatever vLLM does.
    fleet.vllm.faults.health_failing = False
    await fleet.steps(5)
    assert (fleet.status, fleet.version) == (RolloutStatus.ABORTED, first)
    fleet.vllm.faults.health_failing = True
    # An operator retries within the cooldown: the rule fails again but nothing acts; one
    # "rollback_suppressed" event however long it lasts.
    await fleet.stub.Retry(control_pb2.RetryRequest(meta=_meta("fixed, I think")))
    await fleet.decision(dec.Action.SUPPRESSED)
    await fleet.steps(5)
    assert fleet.status is RolloutStatus.ACTIVE
    suppressed = [e for e in await fleet.events() if e.action == "rollback_suppressed"]
    assert len(suppressed) == 1
    assert "within the 600s cooldown" in suppressed[0].reason
    # Cooldown over: the second automatic rollback.
    await fleet.set_rollback(cooldown_seconds=0, max_automatic_rollbacks=2)
    second = await fleet.rolled_back()
    assert fleet.control.app.controller.current.state.migration.automatic_rollbacks == 2
    # The cap: after a retry automation only records, once, that an operator must act.
    await fleet.stub.Retry(control_pb2.RetryRequest(meta=_meta("again")))
    await fleet.decision(dec.Action.CAP_REACHED)
    await fleet.steps(5)
    assert fleet.status is RolloutStatus.ACTIVE
    capped = [e for e in await fleet.events() if e.action == "rollback_cap_reached"]
    assert len(capped) == 1
    assert "2 automatic rollbacks reached the cap of 2: an operator must act" in capped[0].reason
    history = [(e.action, e.actor) for e in await fleet.events(12)]
    assert history[: history.index(("rollback", "rollback-controller")) + 1] == [
        ("rollback_cap_reached", "rollback-controller"),
        ("retry", "operator"),
        ("rollback", "rollback-controller"),
    ]
    assert second > first
