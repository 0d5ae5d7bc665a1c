"""Issue 21's control-plane holes, one test per case of the audit: forged router sessions and
stats, router ids taken over, fake hellos kept for ever, log lines forged through ids and NACK
reasons, dead routers never leaving the hub."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.hub import Hub, HubFull, IdInUse, RouterRecord
from control_service.session import ExpiryAudit
from tests.control.conftest import Control, RawRouter, start, violations, wait_until

P = control_pb2
ROUTER_TOKEN = "fleet-token-0123456789"
OP_TOKEN = "operator-token-0123456"
ROUTER = (("authorization", f"Bearer {ROUTER_TOKEN}"),)
OPERATOR = (("authorization", f"Bearer {OP_TOKEN}"),)


@pytest.fixture
async def fleet(db: Path) -> AsyncIterator[Control]:
    c = await start(db, auth_token=OP_TOKEN, router_token=ROUTER_TOKEN)
    yield c
    await c.close()


def vllm_stats(**fields: int) -> control_pb2.ProviderTaskStats:
    msg = P.ProviderTaskStats(
        provider=common_pb2.PROVIDER_VLLM, task=common_pb2.TASK_SYNTHESIS, requests=10
    )
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


async def connected(control: Control, router_id: str, **kw: object) -> RawRouter:
    router = RawRouter(control.stub, router_id, metadata=ROUTER, **kw)  # type: ignore[arg-type]
    snap = await router.next_snapshot()
    router.ack(snap.version)
    await wait_until(control, lambda: router_id in control.app.hub.synced())
    return router


async def refused_with(router: RawRouter) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await router.next_snapshot()
    return exc.value


async def stats_refused_events(control: Control) -> list[control_pb2.AuditEvent]:
    events = (await control.stub.ListEvents(P.ListEventsRequest(), metadata=OPERATOR)).events
    return [e for e in events if e.action == "router_stats_refused"]


async def test_forged_huge_and_negative_counts_are_refused_and_audited(fleet: Control) -> None:
    """The audit's case: ``requests=1e15, errors=-1e9`` from one session hid 1000/1000 real
    vLLM errors from the rules."""
    router = await connected(fleet, "r1")
    forged = vllm_stats(requests=10**15, errors=-(10**9))
    router.send(P.RouterSessionRequest(stats=P.StatsReport(config_version=1, stats=[forged])))
    err = await refused_with(router)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(err)) >= {"stats.stats[0].requests", "stats.stats[0].errors"}
    assert fleet.app.stats.merged(0) == {}  # nothing of the report was kept
    (event,) = await stats_refused_events(fleet)
    assert event.actor == "router:r1"
    assert "stats.stats[0].requests" in json.loads(event.after_json)["evidence"]["violations"]


@pytest.mark.parametrize(
    ("stats", "field"),
    [
        (vllm_stats(requests=5, errors=6), "stats.stats[0].errors"),
        (vllm_stats(requests=5, errors=2, timeouts=3), "stats.stats[0].timeouts"),
        (vllm_stats(consecutive_timeouts=-1), "stats.stats[0].consecutive_timeouts"),
        (vllm_stats(prompt_tokens=-5), "stats.stats[0].prompt_tokens"),
        (
            P.ProviderTaskStats(
                provider=common_pb2.PROVIDER_VLLM,
                requests=1,
                total_ms=P.Histogram(upper_bounds=[1, 2], counts=[5, 0, 0]),
            ),
            "stats.stats[0].total_ms.counts",
        ),
        (P.ProviderTaskStats(provider=99, requests=1), "stats.stats[0].provider"),  # type: ignore[arg-type]
    ],
)
async def test_inconsistent_stats_are_refused(
    fleet: Control, stats: control_pb2.ProviderTaskStats, field: str
) -> None:
    router = await connected(fleet, "r1")
    router.send(P.RouterSessionRequest(stats=P.StatsReport(config_version=1, stats=[stats])))
    err = await refused_with(router)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err)


async def test_a_stats_config_version_from_the_future_is_refused(fleet: Control) -> None:
    router = await connected(fleet, "r1")
    report = P.StatsReport(config_version=10**9, stats=[vllm_stats()])
    router.send(P.RouterSessionRequest(stats=report))
    err = await refused_with(router)
    assert violations(err) == ["stats.config_version"]


async def test_the_shared_router_token_cannot_take_over_a_live_router_id(fleet: Control) -> None:
    """The audit's case: a holder of the fleet token took over another router's id and the two
    flapped for ever. Now the newcomer is refused while the owner is live; the same process
    reconnecting (same instance id) still replaces its old session at once."""
    owner = await connected(fleet, "r1", instance_id="owner")
    intruder = RawRouter(fleet.stub, "r1", metadata=ROUTER, instance_id="intruder")
    err = await refused_with(intruder)
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    rec = fleet.app.hub.router("r1")
    assert rec is not None
    assert (rec.connected, rec.instance_id, rec.sessions) == (True, "owner", 1)
    again = RawRouter(fleet.stub, "r1", metadata=ROUTER, instance_id="owner")
    assert (await again.next_snapshot()).version == 1
    assert (await refused_with(owner)).code() == grpc.StatusCode.ALREADY_EXISTS  # superseded
    again.close()


@pytest.mark.parametrize(
    "router_id", ["", "r1\nERROR control forged line", "x" * 129, "-leading-dash", "ä"]
)
async def test_a_hello_without_a_valid_router_id_is_refused(fleet: Control, router_id: str) -> None:
    err = await refused_with(RawRouter(fleet.stub, router_id, metadata=ROUTER, instance_id="i"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err) == ["hello.router_id"]
    assert fleet.app.hub.routers() == []


async def test_nack_reasons_with_newlines_do_not_forge_log_lines(
    fleet: Control, caplog: pytest.LogCaptureFixture
) -> None:
    router = await connected(fleet, "r1")
    with caplog.at_level(logging.WARNING, logger="control_service.session"):
        router.nack(1, "bad config\nERROR control_service: forged" + "y" * 5000)
        await wait_until(
            fleet, lambda: (fleet.app.hub.router("r1") or RouterRecord("")).last_nack_version == 1
        )
    lines = [r.getMessage() for r in caplog.records if "refused v1" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "bad config\\nERROR" in lines[0]
    assert len(lines[0]) < 400
    rec = fleet.app.hub.router("r1")
    assert rec is not None
    assert len(rec.last_nack_reason) == 1024  # stored cut short, too
    router.close()


def test_fake_hellos_are_bounded() -> None:
    """The audit's case: 20 000 fake hellos were kept for ever (GetState 5.2 MB). Records are
    capped: the longest-disconnected goes first, and with every slot live a new id is
    refused."""
    now = [0.0]
    hub = Hub(clock=lambda: now[0], max_routers=3, expiry_s=3600)
    sessions = [hub.open(f"r{i}", "", 0, "i") for i in range(3)]
    with pytest.raises(HubFull):
        hub.open("r3", "", 0, "i")
    hub.close(sessions[1])
    now[0] = 1
    hub.close(sessions[0])
    hub.open("r3", "", 0, "i")  # r1, disconnected longest, makes room
    assert [r.router_id for r in hub.routers()] == ["r0", "r2", "r3"]


def test_disconnected_records_expire_and_are_reported() -> None:
    now = [0.0]
    expired: list[RouterRecord] = []
    hub = Hub(clock=lambda: now[0], expiry_s=60, takeover_s=30, on_expire=expired.append)
    s = hub.open("pod-a", "10.0.0.1:50051", 4, "i")
    with pytest.raises(IdInUse):
        hub.open("pod-a", "", 4, "other")
    now[0] = 31  # silent for longer than takeover_s: a half-open session is taken over
    s2 = hub.open("pod-a", "", 4, "other")
    assert s.superseded
    hub.close(s2)
    now[0] = 90
    assert [r.router_id for r in hub.routers()] == ["pod-a"]
    now[0] = 92
    assert hub.routers() == []
    assert [(r.router_id, r.address, r.applied_version) for r in expired] == [
        ("pod-a", "10.0.0.1:50051", 4)
    ]


async def test_dead_pods_leave_the_hub_after_a_rolling_deploy(db: Path) -> None:
    """Issue 19's case: after a rolling deploy (router id = pod name) GetHealth stayed DEGRADED
    and the routers list held dead pods for ever. The audit log keeps them."""
    c = await start(db)
    try:
        old = RawRouter(c.stub, "pod-old")
        old.ack((await old.next_snapshot()).version)
        new = RawRouter(c.stub, "pod-new")
        new.ack((await new.next_snapshot()).version)
        await wait_until(c, lambda: len(c.app.hub.synced()) == 2)
        old.close()
        await wait_until(c, lambda: c.app.hub.connected == 1)
        health = await c.stub.GetHealth(P.GetHealthRequest())
        assert health.status == P.HEALTH_STATUS_DEGRADED
        c.app.hub.expiry_s = 0.0  # as if router_expiry_s had passed since pod-old left
        health = await c.stub.GetHealth(P.GetHealthRequest())
        assert health.status == P.HEALTH_STATUS_OK
        state = await c.stub.GetState(P.GetStateRequest())
        assert [r.router_id for r in state.routers] == ["pod-new"]
        audit = c.app.hub.on_expire
        assert isinstance(audit, ExpiryAudit)
        await audit.drain()
        events = (await c.stub.ListEvents(P.ListEventsRequest())).events
        (expired,) = [e for e in events if e.action == "router_expired"]
        assert json.loads(expired.after_json)["evidence"]["router_id"] == "pod-old"
        new.close()
    finally:
        await c.close()
