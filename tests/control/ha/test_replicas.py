"""Two control replicas in one process on the session's etcd cluster: one leads, and it shows
(health, metrics, audit log); a follower refuses a mutation naming the leader; a router's stats
reported to the follower reach the leader's windows (through etcd); a follower's router gets each
version; a clean stop hands leadership over at once (the lease is revoked, not waited out)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from pydantic import ValidationError

from clients.gen.llmgateway.v1 import common_pb2
from clients.gen.llmgateway.v1 import control_pb2 as P
from control_service.settings import ControlSettings
from llmtools.etcd_cluster import EtcdCluster
from tests.control.conftest import Control, RawRouter, error_info, meta, start
from tests.control.ha.support import eventually


@pytest.fixture
async def pair(
    etcd_cluster: EtcdCluster, etcd_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Control, Control]]:
    """(leader, follower), the first one elected leading."""
    cs = [
        await start(
            tmp_path / f"{name}.db",
            store=etcd_cluster.url,
            etcd_prefix=etcd_prefix,
            leader_lease_ttl_s=2,
            replica_id=name,
            metrics_port=0,
        )
        for name in ("a", "b")
    ]
    try:
        waits = [
            asyncio.create_task(c.app.replica.elector.wait_for(lambda v: v.is_leader))  # type: ignore[union-attr]
            for c in cs
        ]
        done, pending = await asyncio.wait(waits, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        assert done, "no leader elected"
        leader = cs[waits.index(done.pop())]
        follower = cs[1 - cs.index(leader)]
        assert follower.app.replica is not None
        async with asyncio.timeout(10):  # until the follower knows who leads
            await follower.app.replica.elector.wait_for(lambda v: v.leader is not None)
        yield leader, follower
    finally:
        for c in cs:
            await c.close()


def _line(health: P.GetHealthResponse) -> str:
    return next(c.detail for c in health.components if c.name == "control/leadership")


async def test_leadership_is_visible_in_health_metrics_and_the_audit_log(
    pair: tuple[Control, Control],
) -> None:
    leader, follower = pair
    lid = leader.app.settings.replica_id
    assert _line(await leader.stub.GetHealth(P.GetHealthRequest())).startswith(f"leader {lid}")
    follower_line = _line(await follower.stub.GetHealth(P.GetHealthRequest()))
    assert f"leader {lid} at 127.0.0.1:{leader.app.port}" in follower_line
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{leader.app.metrics_port}/metrics")).text
    assert f'llm_control_leader{{replica="{lid}"}} 1.0' in text
    assert "llm_control_fenced_writes_total 0.0" in text
    events = (await follower.stub.ListEvents(P.ListEventsRequest())).events
    elected = [e for e in events if e.action == "leader_elected"]
    assert json.loads(elected[0].after_json)["evidence"]["replica_id"] == lid


async def test_a_follower_refuses_a_mutation_naming_the_leader(
    pair: tuple[Control, Control],
) -> None:
    leader, follower = pair
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await follower.stub.Promote(P.PromoteRequest(meta=meta()))
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    info = error_info(exc.value)
    assert info.reason == "NOT_LEADER"
    assert info.metadata["leader_address"] == f"127.0.0.1:{leader.app.port}"
    assert info.metadata["leader_id"] == leader.app.settings.replica_id
    # Nothing was written; the leader takes the same change.
    snap = (await leader.stub.Promote(P.PromoteRequest(meta=meta()))).snapshot
    assert snap.version == 2
    events = (await leader.stub.ListEvents(P.ListEventsRequest())).events
    assert events[0].action == "promote"


async def test_stats_reported_to_a_follower_reach_the_leader_and_its_router_gets_each_version(
    pair: tuple[Control, Control],
) -> None:
    leader, follower = pair
    router = RawRouter(follower.stub, "r1")
    assert (await router.next_snapshot()).version == 1
    router.ack(1)
    stats = P.ProviderTaskStats(
        provider=common_pb2.PROVIDER_VLLM,
        task=common_pb2.TASK_SYNTHESIS,
        requests=40,
        errors=2,
        total_ms=P.Histogram(upper_bounds=[100, 1000], counts=[30, 10, 0], sum=5000),
    )
    router.send(P.RouterSessionRequest(stats=P.StatsReport(config_version=1, stats=[stats])))

    async def arrived() -> bool:
        return leader.app.stats.reports_received == 1

    await eventually(arrived)
    agg = leader.app.stats.merged(0)[("vllm", "synthesis")]
    assert (agg.requests, agg.errors) == (40, 2)
    assert follower.app.stats.reports_received == 1  # every replica has every report, once
    # A change made on the leader reaches the follower's router by the follower's etcd watch.
    await leader.stub.Promote(P.PromoteRequest(meta=meta()))
    assert (await router.next_snapshot()).version == 2
    router.close()


async def test_a_clean_stop_hands_leadership_over_without_waiting_a_lease(
    pair: tuple[Control, Control],
) -> None:
    leader, follower = pair
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await leader.app.stop(0)
    replica = follower.app.replica
    assert replica is not None
    async with asyncio.timeout(1.5):  # well under the 2 s lease: resigned, not expired
        await replica.elector.wait_for(lambda v: v.is_leader)
    assert loop.time() - t0 < 1.5


def test_an_unknown_store_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="store"):
        ControlSettings(store="redis://x:1")
    with pytest.raises(ValidationError, match="no etcd endpoint"):
        ControlSettings(store="etcd://")
    assert ControlSettings(store="sqlite").store == ""


def test_llm_control_store_flag_selects_the_store_and_refuses_a_bad_one() -> None:
    from control_service.main import main

    with pytest.raises(SystemExit) as exc:
        main(["--store", "redis://x:1", "--log-level", "ERROR"])
    assert "store" in str(exc.value)
