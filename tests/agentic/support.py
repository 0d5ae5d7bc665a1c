"""A router over both simulators, and helpers to read the new stream events."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from tests.router.conftest import make_settings
from tests.router.helpers import Collected, collect

PROVIDERS = {"ollama": common_pb2.PROVIDER_OLLAMA, "vllm": common_pb2.PROVIDER_VLLM}


def png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class Stack:
    app: RouterApp
    sims: dict[str, RunningSimulator]
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub

    async def generate(self, req: router_pb2.GenerateRequest) -> Collected:
        return await collect(self.stub.Generate(req, timeout=10))

    def wire(self, provider: str) -> dict[str, Any]:
        """The body the router sent to the engine last (as the simulator logged it)."""
        entries = [
            e
            for e in self.sims[provider].context.log.entries()
            if e["path"] in ("/api/chat", "/v1/chat/completions")
        ]
        return entries[-1]


async def start_stack(**sim_overrides: Any) -> Stack:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA, **sim_overrides))
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, **sim_overrides))
    app = await start_router(
        make_settings(ollama_base_url=ollama.base_url, vllm_base_url=vllm.base_url)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return Stack(
        app, {"ollama": ollama, "vllm": vllm}, channel, router_pb2_grpc.RouterServiceStub(channel)
    )


async def stop_stack(s: Stack) -> None:
    await s.channel.close()
    await s.app.stop(0)
    for sim in s.sims.values():
        await sim.stop()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await start_stack()
    yield s
    await stop_stack(s)


def reasoning(c: Collected) -> str:
    return "".join(m.reasoning.text for m in c.messages if m.HasField("reasoning"))


def tool_calls(c: Collected) -> list[tuple[str, str, Any]]:
    """(id, name, arguments) of each call, its fragments joined."""
    calls: dict[int, list[str]] = {}
    for m in c.messages:
        if m.HasField("tool_call"):
            d = m.tool_call
            if d.index not in calls:
                calls[d.index] = [d.id, d.name, ""]
            calls[d.index][2] += d.arguments_fragment
    return [(i, n, orjson.loads(a)) for i, n, a in calls.values()]
