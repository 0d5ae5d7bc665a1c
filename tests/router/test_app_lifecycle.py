"""The router's start-up and shutdown: a failed start leaks nothing, SIGTERM-style drain, and the
config subscriber's state in gRPC health (``llmgateway.v1.RouterService/config``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from router_service.app import SERVICE_NAME, start_router
from router_service.config.subscriber import SubscriberState
from tests._net import can_bind, free_port, port_in_use
from tests._wait import wait_for
from tests.router.conftest import Harness, make_settings, start_harness
from tests.router.fake_control import make_snapshot, new_fake_control, start_fake_control
from tests.router.fake_engine import Script

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CONFIG = f"{SERVICE_NAME}/config"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with port_in_use() as port:
        yield port


async def test_a_failed_metrics_start_stops_everything_already_started(busy_port: int) -> None:
    before = asyncio.all_tasks()
    grpc_port = free_port()
    settings = make_settings(
        port=grpc_port,
        metrics_port=busy_port,  # the last start-up step fails: address in use
        control_address=f"127.0.0.1:{free_port()}",  # a subscriber task and a channel start
        config_cache_path=None,
        router_id="leak-check",
    )
    with pytest.raises(OSError, match=r"(?i)address already in use"):
        await start_router(settings)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set(), [t.get_name() for t in leftover]
    assert can_bind(grpc_port), "the gRPC server still holds its port"


async def test_a_port_in_use_fails_before_anything_runs(busy_port: int) -> None:
    before = asyncio.all_tasks()
    with pytest.raises(OSError, match="could not bind"):
        await start_router(make_settings(port=busy_port))
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


async def _check(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def test_drain_turns_health_not_serving_refuses_new_calls_and_waits_the_grace() -> None:
    h = await start_harness(grace_period_s=5.0)
    try:
        assert await _check(h.channel, "") == SERVING
        assert await _check(h.channel, SERVICE_NAME) == SERVING
        h.ollama.push(Script(tokens=["a", "b", "c"], hang_after=1))
        call = h.stub.Generate(router_pb2.GenerateRequest(prompt="x"))
        start, first = await call.read(), await call.read()
        assert isinstance(start, router_pb2.GenerateResponse)
        assert isinstance(first, router_pb2.GenerateResponse)
        assert start.HasField("start")
        assert first.delta.text == "a"
        stopping = asyncio.create_task(h.app.stop(0.5))
        probe = grpc.aio.insecure_channel(f"127.0.0.1:{h.app.port}")

        async def draining() -> bool:
            try:
                return bool(await _check(probe, SERVICE_NAME) == NOT_SERVING)
            except grpc.aio.AioRpcError:
                return True  # already refusing: NOT_SERVING was set before that

        try:
            # The drain's first step, before the server stops accepting.
            await wait_for(draining, 5, what="health NOT_SERVING", interval=0.01)
            assert h.app.health._server_status[""] == NOT_SERVING
            assert h.app.health._server_status[CONFIG] == NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await probe_generate(probe)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await probe.close()
        assert not stopping.done()  # the hanging stream holds it for the grace period
        async with asyncio.timeout(5):
            await stopping
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()  # cut at the end of the grace
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def probe_generate(channel: grpc.aio.Channel) -> None:
    stub = router_pb2_grpc.RouterServiceStub(channel)
    async for _ in stub.Generate(router_pb2.GenerateRequest(prompt="late"), timeout=5):
        pass


async def test_standalone_router_config_health_is_serving() -> None:
    h = await start_harness()
    try:
        assert await _check(h.channel, CONFIG) == SERVING
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def _wait_health(h: Harness, service: str, status: int) -> None:
    async with asyncio.timeout(10):
        while await _check(h.channel, service) != status:
            assert h.app.subscriber is not None
            await h.app.subscriber.wait_change()


async def test_config_health_follows_the_subscriber_the_router_stays_serving(
    tmp_path: Path,
) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await start_harness(
        control_address=f"127.0.0.1:{port}",
        router_id="r1",
        config_cache_path=tmp_path / "r1.snapshot",
        stats_report_interval_s=0.05,
        config_stale_grace_s=0.3,
    )
    try:
        assert h.app.subscriber is not None
        assert h.app.subscriber.state is SubscriberState.CONNECTING
        assert await _check(h.channel, CONFIG) == NOT_SERVING  # no config from control yet
        assert await _check(h.channel, "") == SERVING  # serving the bootstrap config
        await fake.outbox.put(make_snapshot(1))
        await fake.wait_for(lambda: fake.acks == [1])
        await _wait_health(h, CONFIG, SERVING)
        await server.stop(0)  # the control plane goes away
        await asyncio.wait_for(h.app.subscriber.wait_state(SubscriberState.STALE), 10)
        assert await _check(h.channel, CONFIG) == SERVING  # stale within the grace
        await asyncio.wait_for(h.app.subscriber.wait_state(SubscriberState.ERROR), 10)
        await _wait_health(h, CONFIG, NOT_SERVING)
        # The data plane still serves its last snapshot: Kubernetes must not pull it.
        assert await _check(h.channel, "") == SERVING
        assert await _check(h.channel, SERVICE_NAME) == SERVING
        reply = [m async for m in h.stub.Generate(router_pb2.GenerateRequest(prompt="x"))]
        assert reply[-1].HasField("end")
    finally:
        await h.channel.close()
        await h.app.stop(0)
