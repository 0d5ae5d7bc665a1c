"""Real routers and a real control service together: convergence, restarts, outages."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from router_service.config.subscriber import SubscriberState
from tests.control.conftest import Control, start
from tests.router.conftest import Harness, start_harness
from tests.router.helpers import collect


async def _routers(n: int, control_port: int, tmp_path: Path) -> list[Harness]:
    return [
        await start_harness(
            control_address=f"127.0.0.1:{control_port}",
            router_id=f"r{i}",
            config_cache_path=tmp_path / f"r{i}.snapshot",
            stats_report_interval_s=0.05,
        )
        for i in range(n)
    ]


async def _converged(routers: list[Harness], version: int) -> None:
    waits = (h.app.config.wait_version(version) for h in routers)
    await asyncio.wait_for(asyncio.gather(*waits), 10)


async def _close(routers: list[Harness]) -> None:
    for h in routers:
        await h.channel.close()
        await h.app.stop(0)


async def _provider(h: Harness, key: str) -> int:
    got = await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x", routing_key=key)))
    return got.start.provider


def _meta(reason: str) -> control_pb2.ChangeMeta:
    return control_pb2.ChangeMeta(actor="test", reason=reason)


async def test_routers_converge_on_every_change_and_route_by_it(tmp_path: Path) -> None:
    control: Control = await start(tmp_path / "control.db")
    routers = await _routers(3, control.app.port, tmp_path)
    try:
        state = await control.stub.GetState(control_pb2.GetStateRequest())
        await _converged(routers, state.snapshot.version)
        keys = [f"query-{i}" for i in range(40)]
        assert {await _provider(routers[0], k) for k in keys} == {common_pb2.PROVIDER_OLLAMA}

        await control.stub.Promote(control_pb2.PromoteRequest(meta=_meta("shadow")))
        snap = (
            await control.stub.SetWeight(
                control_pb2.SetWeightRequest(meta=_meta("half"), weight_percent=50)
            )
        ).snapshot
        await _converged(routers, snap.version)
        # Every router places each routing key identically; about half the keys go to vLLM.
        placements = [[await _provider(h, k) for k in keys] for h in routers]
        assert placements[0] == placements[1] == placements[2]
        assert 8 <= placements[0].count(common_pb2.PROVIDER_VLLM) <= 32

        snap = (
            # Into PRIMARY only past the go/no-go gate (no data here: INCONCLUSIVE), or forced.
            await control.stub.Promote(
                control_pb2.PromoteRequest(meta=_meta("go"), full=True, force=True)
            )
        ).snapshot
        await _converged(routers, snap.version)
        assert {await _provider(routers[1], k) for k in keys} == {common_pb2.PROVIDER_VLLM}

        # The control service sees every router on the latest version.
        state = await control.stub.GetState(control_pb2.GetStateRequest())
        applied = {r.router_id: r.applied_version for r in state.routers}
        assert applied == {"r0": snap.version, "r1": snap.version, "r2": snap.version}

        snap = (await control.stub.Abort(control_pb2.AbortRequest(meta=_meta("bad")))).snapshot
        await _converged(routers, snap.version)
        assert {await _provider(routers[2], k) for k in keys} == {common_pb2.PROVIDER_OLLAMA}
    finally:
        await _close(routers)
        await control.close()


async def test_control_restart_loses_nothing_and_routers_resync(tmp_path: Path) -> None:
    db = tmp_path / "control.db"
    control = await start(db)
    port = control.app.port
    routers = await _routers(2, port, tmp_path)
    try:
        await control.stub.Promote(control_pb2.PromoteRequest(meta=_meta("shadow")))
        snap = (
            await control.stub.Promote(control_pb2.PromoteRequest(meta=_meta("split")))
        ).snapshot
        await _converged(routers, snap.version)
        await control.close()
        # Routers keep serving the last good config while the control service is away.
        for h in routers:
            assert h.app.subscriber is not None
            await asyncio.wait_for(h.app.subscriber.wait_state(SubscriberState.STALE), 10)
            assert h.app.config.current.version == snap.version
        control = await start(db, port=port)
        state = await control.stub.GetState(control_pb2.GetStateRequest())
        assert state.snapshot.version == snap.version  # nothing acknowledged was lost
        assert state.snapshot.migration.phase == control_pb2.PHASE_SPLIT
        for h in routers:
            assert h.app.subscriber is not None
            await asyncio.wait_for(h.app.subscriber.wait_state(SubscriberState.SYNCED), 20)
        newer = (
            await control.stub.SetWeight(
                control_pb2.SetWeightRequest(meta=_meta("more"), weight_percent=30)
            )
        ).snapshot
        assert newer.version == snap.version + 1  # versions never go backwards
        await _converged(routers, newer.version)
    finally:
        await _close(routers)
        await control.close()
