"""What the HA tests share: fake engines the replicas probe (real HTTP on port 0, vLLM's health
switchable), the leader as the replicas report it, routers on every replica, the audit log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web

from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc, router_pb2
from clients.llm import ControlClient
from llmtools.control_replicas import ControlReplicas
from router_service.config.routing import RoutingConfig
from tests.router.conftest import Harness, start_harness
from tests.router.helpers import collect


@dataclass
class Engines:
    """``/`` (Ollama) and ``/health`` (vLLM) for the replicas' probes; ``vllm_status`` flips."""

    vllm_status: int = 200
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> Engines:
        async def ollama(_: web.Request) -> web.Response:
            return web.Response(text="Ollama is running")

        async def vllm(_: web.Request) -> web.Response:
            return web.Response(status=self.vllm_status)

        app = web.Application()
        app.router.add_get("/", ollama)
        app.router.add_get("/health", vllm)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def env(self) -> dict[str, str]:
        return {"OLLAMA_BASE_URL": self.url, "VLLM_BASE_URL": self.url}


async def leadership(address: str) -> str:
    """The ``control/leadership`` health line of one replica ("" when it does not answer)."""
    async with grpc.aio.insecure_channel(address) as ch:
        stub = control_pb2_grpc.ControlServiceStub(ch)
        try:
            resp = await stub.GetHealth(control_pb2.GetHealthRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return ""
    return next((c.detail for c in resp.components if c.name == "control/leadership"), "")


async def wait_leader(reps: ControlReplicas, among: list[int], timeout_s: float = 15) -> int:
    """The index of the replica (of ``among``) that reports itself the leader."""
    async with asyncio.timeout(timeout_s):
        while True:
            for i in among:
                if (await leadership(reps.addresses[i])).startswith("leader "):
                    return i
            await asyncio.sleep(0.02)


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10) -> None:
    """Wait until ``predicate()`` (an RPC to another process: there is no event to wait on
    across processes, so it is asked again every 50 ms) holds."""
    async with asyncio.timeout(timeout_s):
        while not await predicate():  # noqa: ASYNC110 - a condition in another process
            await asyncio.sleep(0.05)


async def all_events(client: ControlClient) -> list[control_pb2.AuditEvent]:
    out: list[control_pb2.AuditEvent] = []
    before = 0
    while True:
        page = await client.list_events(page_size=200, before_version=before)
        out.extend(page.events)
        if not page.next_before_version:
            return out
        before = page.next_before_version


def after(event: control_pb2.AuditEvent) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(event.after_json or "{}")
    return loaded


@dataclass
class Router:
    harness: Harness
    applied: list[int] = field(default_factory=list)  # every version swapped in, in order
    served: int = 0
    failed: int = 0


@asynccontextmanager
async def routers(reps: ControlReplicas, n: int, tmp_path: Path) -> AsyncIterator[list[Router]]:
    """``n`` routers, router i listing the replicas starting at replica i % size (so sessions
    spread over every replica); each records every version it applies."""
    out: list[Router] = []
    try:
        for i in range(n):
            addrs = reps.addresses[i % reps.size :] + reps.addresses[: i % reps.size]
            h = await start_harness(
                control_address=",".join(addrs),
                router_id=f"r{i}",
                config_cache_path=tmp_path / f"r{i}.snapshot",
                stats_report_interval_s=0.2,
            )
            r = Router(h)
            holder = h.app.config
            original = holder.swap

            def swap(
                config: RoutingConfig,
                r: Router = r,
                original: Callable[[RoutingConfig], RoutingConfig] = original,
            ) -> RoutingConfig:
                r.applied.append(config.version)
                return original(config)

            holder.swap = swap  # type: ignore[method-assign]
            out.append(r)
        yield out
    finally:
        for r in out:
            await r.harness.channel.close()
            await r.harness.app.stop(0)


async def serve_once(r: Router, key: str) -> None:
    """One request through the router (it serves from its config, whatever the control does)."""
    try:
        await collect(
            r.harness.stub.Generate(router_pb2.GenerateRequest(prompt="x", routing_key=key))
        )
        r.served += 1
    except grpc.aio.AioRpcError:
        r.failed += 1


async def converged(rs: list[Router], version: int, timeout_s: float = 15) -> None:
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(r.harness.app.config.wait_version(version) for r in rs))
