"""GetHealth: store, routers and engines (probed through an httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.gen.llmgateway.v1 import control_pb2
from tests.control.conftest import Control, Engines, RawRouter, meta, start, wait_until

P = control_pb2


async def health(control: Control) -> tuple[int, dict[str, control_pb2.ComponentHealth]]:
    r = await control.stub.GetHealth(P.GetHealthRequest())
    return r.status, {c.name: c for c in r.components}


async def test_all_healthy(control: Control) -> None:
    status, parts = await health(control)
    assert status == P.HEALTH_STATUS_OK
    assert set(parts) == {"store", "engine/ollama", "engine/vllm"}
    assert all(p.status == P.HEALTH_STATUS_OK for p in parts.values())
    assert parts["store"].latency_ms >= 0


async def test_vllm_down_matters_only_once_it_carries_traffic(db: Path) -> None:
    engines = Engines(status={"ollama.test": 200, "vllm.test": 503})
    c = await start(db, engines)
    try:
        status, parts = await health(c)
        assert status == P.HEALTH_STATUS_DEGRADED
        assert parts["engine/vllm"].status == P.HEALTH_STATUS_DEGRADED
        assert "HTTP 503" in parts["engine/vllm"].detail
        await c.stub.Promote(P.PromoteRequest(meta=meta()))
        await c.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=10))
        status, parts = await health(c)
        assert (status, parts["engine/vllm"].status) == (P.HEALTH_STATUS_DOWN,) * 2
    finally:
        await c.close()


async def test_unreachable_and_hanging_engines_are_down_within_the_probe_timeout(
    db: Path,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "ollama.test":
            raise httpx.ConnectError("refused", request=request)
        await asyncio.Event().wait()  # vLLM never answers
        raise AssertionError("unreachable")

    c = await start(db, transport=httpx.MockTransport(handler), probe_timeout_s=0.05)
    try:
        t0 = time.perf_counter()
        status, parts = await health(c)
        assert time.perf_counter() - t0 < 1.0
        assert status == P.HEALTH_STATUS_DOWN
        assert "ConnectError" in parts["engine/ollama"].detail
        assert "no answer within 0.05s" in parts["engine/vllm"].detail
    finally:
        await c.close()


async def test_probes_are_cached(db: Path) -> None:
    engines = Engines()
    c = await start(db, engines, probe_cache_s=60)
    try:
        await asyncio.gather(*(health(c) for _ in range(5)))
        await health(c)
        assert engines.probes == 2  # one round: ollama and vllm
    finally:
        await c.close()


async def test_routers_are_components(control: Control) -> None:
    router = RawRouter(control.stub, "r1")
    await router.next_snapshot()
    _, parts = await health(control)
    assert parts["router/r1"].status == P.HEALTH_STATUS_DEGRADED  # sent, not yet ACKed
    router.ack(1)
    await wait_until(control, lambda: control.app.hub.synced() == ["r1"])
    status, parts = await health(control)
    assert (status, parts["router/r1"].status) == (P.HEALTH_STATUS_OK,) * 2
    router.close()
    await wait_until(control, lambda: control.app.hub.connected == 0)
    _, parts = await health(control)
    assert parts["router/r1"].detail == "disconnected"


async def test_standard_grpc_health(control: Control) -> None:
    stub = health_pb2_grpc.HealthStub(control.channel)
    for service in ("", "llmgateway.v1.ControlService"):
        r = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert r.status == health_pb2.HealthCheckResponse.SERVING
