"""A router whose vLLM engine is a pool of real HTTP replicas (``FaultEngine``s on port 0) and
whose Ollama engine is one more, for the engine-pool tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from router_service.app import RouterApp, start_router
from router_service.pools import EnginePool
from tests.router.conftest import make_settings
from tests.router.fault_engine import FaultEngine
from tests.router.helpers import Collected, collect


@dataclass
class PoolStack:
    router: RouterApp
    replicas: list[FaultEngine]
    ollama: FaultEngine
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub

    @property
    def pool(self) -> EnginePool:
        p = self.router.providers["vllm"]
        assert isinstance(p, EnginePool)
        return p

    def served(self) -> list[int]:
        """Chat requests each replica received, in replica order."""
        return [len(e.bodies) for e in self.replicas]

    async def generate(self, key: str, request_id: str = "") -> Collected:
        req = router_pb2.GenerateRequest(
            request_id=request_id,
            messages=[router_pb2.Message(role=router_pb2.ROLE_USER, content="Why is it blue?")],
            routing_key=key,
        )
        return await collect(self.stub.Generate(req, timeout=10))

    async def close(self) -> None:
        await self.channel.close()
        await self.router.stop(0)
        for e in [*self.replicas, self.ollama]:
            await e.stop()


async def start_pool_stack(n: int = 3, via_dns: bool = False, **settings: Any) -> PoolStack:
    """``via_dns``: the router finds the replicas by resolving ``localhost`` (one replica)."""
    replicas = [await FaultEngine("vllm").start() for _ in range(n)]
    ollama = await FaultEngine("ollama").start()
    static = ",".join(e.base_url for e in replicas)
    overrides: dict[str, Any] = {
        "vllm_base_urls": "" if via_dns else static,
        "vllm_dns_url": f"http://localhost:{replicas[0].port}" if via_dns else "",
        "ollama_base_url": ollama.base_url,
        "primary_provider": "vllm",
        "fallback_provider": "ollama",
        "breaker_failure_threshold": 2,
        "engine_probe_interval_s": 60.0,
        "replica_scrape_interval_s": 60.0,
    }
    overrides.update(settings)
    router = await start_router(make_settings(**overrides))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    return PoolStack(router, replicas, ollama, channel, router_pb2_grpc.RouterServiceStub(channel))
