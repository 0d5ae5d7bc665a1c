"""Engine pools operated through the control service: ``llmctl engines`` (health, load, hit
rate, the routers' evidence), drain / undrain on every router (audited), replicas pushed in the
flags, and the engine's health staying per pool. Real simulators, a real control service and a
real router connected to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2, router_pb2_grpc
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.pools import EnginePool
from tests.clients.test_llmctl_control import llmctl
from tests.control.conftest import Control, start, violations
from tests.router.conftest import make_settings
from tests.router.helpers import collect

SYSTEM = "You are memOS's planner. Keep to the house rules. " * 30


@dataclass
class Stack:
    sims: list[RunningSimulator]  # vllm 1, vllm 2, ollama
    control: Control
    router: RouterApp
    channel: grpc.aio.Channel

    @property
    def pool(self) -> EnginePool:
        p = self.router.providers["vllm"]
        assert isinstance(p, EnginePool)
        return p

    async def generate(self, key: str) -> str:
        stub = router_pb2_grpc.RouterServiceStub(self.channel)
        req = router_pb2.GenerateRequest(
            messages=[
                router_pb2.Message(role=router_pb2.ROLE_SYSTEM, content=SYSTEM),
                router_pb2.Message(role=router_pb2.ROLE_USER, content=f"step of {key}"),
            ],
            routing_key=key,
            provider=common_pb2.PROVIDER_VLLM,
        )
        out = await collect(stub.Generate(req, timeout=10))
        return out.text

    async def synced(self) -> None:
        version = self.control.app.controller.current.version
        async with asyncio.timeout(5):
            await self.router.config.wait_version(version)

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate`` holds: the config watcher applies a version right after it is
        swapped in, on the same loop; stats reports arrive on their interval."""
        async with asyncio.timeout(5):
            while not predicate():  # noqa: ASYNC110 - state changed by other tasks, no event
                await asyncio.sleep(0.02)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    sims = [
        await start_simulator(SimConfig(flavor=Flavor.VLLM)),
        await start_simulator(SimConfig(flavor=Flavor.VLLM)),
        await start_simulator(SimConfig(flavor=Flavor.OLLAMA)),
    ]
    v1, v2, oll = sims
    control = await start(
        tmp_path / "control.db",
        transport=httpx.AsyncHTTPTransport(),
        ollama_base_url=oll.base_url,
        vllm_base_urls=f"{v1.base_url},{v2.base_url}",
        probe_timeout_s=0.5,
    )
    router = await start_router(
        make_settings(
            vllm_base_urls=f"{v1.base_url},{v2.base_url}",
            ollama_base_url=oll.base_url,
            control_address=control.target,
            router_id="pool-r1",
            config_cache_path=tmp_path / "router.snapshot",
            stats_report_interval_s=0.05,
            engine_probe_interval_s=60.0,
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    s = Stack(sims, control, router, channel)
    await s.synced()
    yield s
    await channel.close()
    await router.stop(0)
    await control.close()
    for sim in sims:
        await sim.stop()


def meta(reason: str = "test") -> control_pb2.ChangeMeta:
    return control_pb2.ChangeMeta(actor="tester", reason=reason)


async def engines_json(stack: Stack, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    status = await llmctl(stack.control.target, "engines", "-o", "json")
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    replicas: list[dict[str, Any]] = json.loads(out)["replicas"]
    return replicas


async def test_llmctl_engines_lists_health_load_hit_rate_and_evidence(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2, oll = stack.sims
    for i in range(12):
        assert await stack.generate(f"query-{i % 3}")
    # The router's next reports carry its per-replica evidence.
    assert stack.control.app.engines is not None
    book = stack.control.app.engines.evidence
    await stack.until(lambda: sum(e.attempts for e in book.evidence().values()) == 12)
    replicas = await engines_json(stack, capsys)
    by_url = {r["url"]: r for r in replicas}
    assert set(by_url) == {v1.base_url, v2.base_url, oll.base_url}
    assert all(r["healthy"] and r["source"] == "settings" for r in replicas)
    vllm = [by_url[v1.base_url], by_url[v2.base_url]]
    used = [r for r in vllm if r["evidence"]["attempts"] > 0]
    assert sum(r["evidence"]["attempts"] for r in vllm) == 12
    assert all(r["evidence"]["failures"] == 0 and r["evidence"]["routers"] == 1 for r in used)
    # Hit rate from each replica's own prefix cache: the shared system prompt hits.
    assert all(r["prefix_cache_hit_rate"] > 0.5 for r in used)
    assert by_url[oll.base_url]["prefix_cache_hit_rate"] is None
    assert all(r["running"] == 0 and r["waiting"] == 0 for r in vllm)
    # The table form.
    assert await llmctl(stack.control.target, "engines") == 0
    table = capsys.readouterr().out
    assert "HIT RATE" in table
    assert v1.base_url in table


async def test_drain_and_undrain_reach_every_router_and_are_audited(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2, _ = stack.sims
    status = await llmctl(
        stack.control.target, "engines", "drain", v1.base_url, "--reason", "kernel upgrade"
    )
    assert status == 0
    capsys.readouterr()
    await stack.synced()
    await stack.until(lambda: stack.pool.replicas[v1.base_url].draining)
    before = stack.pool.replicas[v1.base_url].stats.attempts
    for i in range(10):
        assert await stack.generate(f"q{i}")
    assert stack.pool.replicas[v1.base_url].stats.attempts == before  # no new request
    assert stack.pool.replicas[v2.base_url].stats.attempts >= 10
    replicas = {r["url"]: r for r in await engines_json(stack, capsys)}
    assert replicas[v1.base_url]["draining"]
    assert not replicas[v2.base_url]["draining"]

    assert await llmctl(stack.control.target, "engines", "undrain", v1.base_url) == 0
    capsys.readouterr()
    await stack.synced()
    await stack.until(lambda: not stack.pool.replicas[v1.base_url].draining)
    events = await stack.control.stub.ListEvents(control_pb2.ListEventsRequest())
    actions = [(e.action, e.reason) for e in events.events[:2]]
    assert actions == [("undrain_replica", ""), ("drain_replica", "kernel upgrade")]
    assert json.loads(events.events[1].after_json) == {"flags.drained_replicas": [v1.base_url]}


async def test_replicas_pushed_in_the_flags_join_and_leave_every_router(stack: Stack) -> None:
    extra = await start_simulator(SimConfig(flavor=Flavor.VLLM))
    try:
        await stack.control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(),
                flags=control_pb2.Flags(
                    replicas=[
                        control_pb2.EngineReplica(
                            provider=common_pb2.PROVIDER_VLLM, url=extra.base_url
                        )
                    ]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["replicas"]),
            )
        )
        await stack.synced()
        await stack.until(lambda: extra.base_url in stack.pool.replicas)
        assert stack.pool.replicas[extra.base_url].source == "control"
        listed = await stack.control.stub.ListEngines(control_pb2.ListEnginesRequest())
        assert [
            (r.url, r.source, r.healthy) for r in listed.replicas if r.url == extra.base_url
        ] == [(extra.base_url, "flags", True)]
        await stack.control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(),
                flags=control_pb2.Flags(),
                update_mask=field_mask_pb2.FieldMask(paths=["replicas"]),
            )
        )
        await stack.synced()
        await stack.until(lambda: extra.base_url not in stack.pool.replicas)
        assert len(stack.pool.replicas) == 2  # the static ones stay
    finally:
        await extra.stop()


async def test_bad_replicas_and_drains_are_refused_naming_the_field(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.control.stub.DrainReplica(
            control_pb2.DrainReplicaRequest(meta=meta(), url="v1")
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["url"]
    for replica, field in (
        (control_pb2.EngineReplica(provider=common_pb2.PROVIDER_VLLM, url="ftp://x"), "url"),
        (control_pb2.EngineReplica(url="http://x:8000"), "provider"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.control.stub.UpdateFlags(
                control_pb2.UpdateFlagsRequest(
                    meta=meta(),
                    flags=control_pb2.Flags(replicas=[replica]),
                    update_mask=field_mask_pb2.FieldMask(paths=["replicas"]),
                )
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert violations(err.value) == [f"flags.replicas[0].{field}"]


async def test_an_engine_is_up_while_one_replica_is(stack: Stack) -> None:
    v1, v2, _ = stack.sims
    await v2.stop()
    health = await stack.control.stub.GetHealth(control_pb2.GetHealthRequest())
    vllm = next(c for c in health.components if c.name == "engine/vllm")
    assert vllm.status == control_pb2.HEALTH_STATUS_OK
    assert vllm.detail.startswith("1 of 2 replicas down")
    assert "/health" in vllm.detail
    listed = await stack.control.stub.ListEngines(control_pb2.ListEnginesRequest())
    down = [r for r in listed.replicas if not r.healthy]
    assert [r.url for r in down] == [v2.base_url]
    await v1.stop()
    health = await stack.control.stub.GetHealth(control_pb2.GetHealthRequest())
    vllm = next(c for c in health.components if c.name == "engine/vllm")
    assert vllm.status != control_pb2.HEALTH_STATUS_OK
