"""RouterSession with raw streams from the test: push on connect and on change, ACK/NACK
bookkeeping, no re-send of an unchanged version, stats, and a restart on the same db file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.hub import RouterRecord
from tests.control.conftest import (
    Control,
    RawRouter,
    meta,
    start,
    violations,
    wait_synced,
    wait_until,
)

P = control_pb2


async def connect_synced(control: Control, ids: list[str]) -> list[RawRouter]:
    routers = [RawRouter(control.stub, rid) for rid in ids]
    for r in routers:
        snap = await r.next_snapshot()
        r.ack(snap.version)
    await wait_until(control, lambda: len(control.app.hub.synced()) == len(ids))
    return routers


def record(control: Control, router_id: str) -> RouterRecord:
    return control.app.hub.router(router_id) or RouterRecord(router_id)


async def routers_info(control: Control) -> dict[str, control_pb2.RouterInfo]:
    state = await control.stub.GetState(P.GetStateRequest())
    return {r.router_id: r for r in state.routers}


async def test_sessions_get_the_snapshot_on_connect_and_converge_on_each_change(
    control: Control,
) -> None:
    routers = await connect_synced(control, [f"r{i}" for i in range(5)])
    for weight in (10, 30):
        if weight == 10:
            resp = await control.stub.Promote(P.PromoteRequest(meta=meta()))
            assert resp.snapshot.version == 2
        r = await control.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=weight))
        version = r.snapshot.version
        for router in routers:
            # A router may first see the promote's version; it ends on the latest.
            snap = await router.next_snapshot()
            while snap.version < version:
                router.ack(snap.version)
                snap = await router.next_snapshot()
            assert snap.version == version
            assert snap.vllm_traffic_percent == weight
            router.ack(snap.version)
        await wait_synced(control, version, 5)
    info = await routers_info(control)
    assert {r.state for r in info.values()} == {P.ROUTER_STATE_SYNCED}
    r0 = info["r0"]
    assert (r0.connected, r0.address, r0.applied_version, r0.last_sent_version) == (
        True,
        "r0:50051",
        version,
        version,
    )
    assert r0.connected_since.seconds > 0
    assert r0.last_seen.seconds >= r0.connected_since.seconds
    for router in routers:
        router.close()


async def test_nack_keeps_the_applied_version_and_shows_the_reason(control: Control) -> None:
    (router,) = await connect_synced(control, ["r1"])
    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    snap = await router.next_snapshot()
    router.nack(snap.version, "unknown model qwen9")
    await wait_until(control, lambda: record(control, "r1").last_nack_version == 2)
    info = (await routers_info(control))["r1"]
    assert (info.applied_version, info.last_nack_version, info.last_nack_reason) == (
        1,
        2,
        "unknown model qwen9",
    )
    assert info.state == P.ROUTER_STATE_ERROR
    health = await control.stub.GetHealth(P.GetHealthRequest())
    router_health = {c.name: c for c in health.components}["router/r1"]
    assert router_health.status == P.HEALTH_STATUS_DEGRADED
    assert "unknown model qwen9" in router_health.detail
    router.close()


async def test_an_unchanged_version_is_never_resent(control: Control) -> None:
    # Connecting with the current version: the snapshot once (so the router knows it is in
    # sync), then only changes.
    router = RawRouter(control.stub, "r1", applied_version=1)
    assert (await router.next_snapshot()).version == 1
    router.ack(1)
    await wait_until(control, lambda: control.app.hub.synced(1) == ["r1"])
    # A change that changes nothing: no new version, nothing sent.
    noop = await control.stub.UpdateFlags(
        P.UpdateFlagsRequest(
            meta=meta(),
            flags=P.Flags(primary_provider=common_pb2.PROVIDER_OLLAMA),
            update_mask=field_mask_pb2.FieldMask(paths=["primary_provider"]),
        )
    )
    assert noop.snapshot.version == 1
    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    # The next message this session gets is version 2: the no-op sent nothing.
    snap = await router.next_snapshot()
    assert snap.version == 2
    router.ack(2)
    await wait_until(control, lambda: control.app.hub.synced(2) == ["r1"])
    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    assert (await router.next_snapshot()).version == 3
    info = (await routers_info(control))["r1"]
    assert info.last_sent_version == 3
    router.close()


async def test_stats_reports_land_in_the_windows(control: Control) -> None:
    (router,) = await connect_synced(control, ["r1"])
    stats = P.ProviderTaskStats(
        provider=common_pb2.PROVIDER_VLLM,
        task=common_pb2.TASK_SYNTHESIS,
        requests=40,
        errors=2,
        errors_by_code=[P.ErrorCount(code=common_pb2.ERROR_CODE_LLM_TIMEOUT, count=2)],
        timeouts=2,
        total_ms=P.Histogram(upper_bounds=[100, 1000], counts=[30, 10, 0], sum=5000),
    )
    router.send(P.RouterSessionRequest(stats=P.StatsReport(config_version=1, stats=[stats])))
    await wait_until(control, lambda: control.app.stats.reports_received == 1)
    agg = control.app.stats.merged(0)[("vllm", "synthesis")]
    assert (agg.requests, agg.errors, agg.timeouts) == (40, 2, 2)
    assert agg.errors_by_code == {"LLM_TIMEOUT": 2}
    assert agg.config_versions == {1}
    assert agg.p95_ms == pytest.approx(100 + 900 * 8 / 10)
    router.close()


async def test_a_session_must_start_with_hello(control: Control) -> None:
    async def requests() -> object:
        yield P.RouterSessionRequest(ack=P.ConfigAck(version=1))

    call = control.stub.RouterSession(requests())  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call.read()
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["hello.router_id"]


async def test_disconnect_and_supersede(control: Control) -> None:
    (first,) = await connect_synced(control, ["r1"])
    second = RawRouter(control.stub, "r1", applied_version=1)
    await wait_until(control, lambda: record(control, "r1").sessions == 2)
    # The older stream is closed; the router stays connected through the newer one.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await first.call.read()
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = (await routers_info(control))["r1"]
    assert info.connected
    second.close()
    await wait_until(control, lambda: control.app.hub.connected == 0)
    info = (await routers_info(control))["r1"]
    assert (info.connected, info.state) == (False, P.ROUTER_STATE_DISCONNECTED)


async def test_restart_on_the_same_db_file_loses_nothing_acknowledged(db: Path) -> None:
    c = await start(db)
    routers = await connect_synced(c, ["r1", "r2"])
    version = (await c.stub.Promote(P.PromoteRequest(meta=meta()))).snapshot.version
    for r in routers:
        assert (await r.next_snapshot()).version == version
        r.ack(version)
    await wait_until(c, lambda: len(c.app.hub.synced(version)) == 2)
    await c.app.stop(0)
    # The streams end with UNAVAILABLE (transient): routers reconnect.
    for r in routers:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await r.call.read()
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    await c.channel.close()
    await c.http.aclose()
    c = await start(db)
    try:
        # r1 comes back on the acknowledged version, r2 lost its copy: both get the snapshot
        # of the version they acknowledged before the restart.
        r1 = RawRouter(c.stub, "r1", applied_version=version)
        r2 = RawRouter(c.stub, "r2", applied_version=0)
        for r in (r1, r2):
            snap = await r.next_snapshot()
            assert (snap.version, snap.migration.phase) == (version, P.PHASE_SHADOW)
            r.ack(snap.version)
        await wait_until(c, lambda: len(c.app.hub.synced(version)) == 2)
        new = await c.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=5))
        assert new.snapshot.version == version + 1
        for r in (r1, r2):
            assert (await r.next_snapshot()).version == version + 1
            r.close()
    finally:
        await c.close()


async def test_hundred_sessions_converge(control: Control) -> None:
    n = 100
    routers = await connect_synced(control, [f"r{i:03}" for i in range(n)])

    async def follow(router: RawRouter, version: int) -> None:
        snap = await router.next_snapshot()
        while snap.version < version:
            snap = await router.next_snapshot()
        router.ack(snap.version)

    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    version = await control.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=10))
    v = version.snapshot.version
    await asyncio.gather(*(follow(r, v) for r in routers))
    await wait_synced(control, v, n)
    # GetHealth with a hundred routers stays far below its 500 ms budget.
    t0 = time.perf_counter()
    health = await control.stub.GetHealth(P.GetHealthRequest())
    assert time.perf_counter() - t0 < 0.5
    assert health.status == P.HEALTH_STATUS_OK
    assert len(health.components) == n + 3
    for r in routers:
        r.close()
