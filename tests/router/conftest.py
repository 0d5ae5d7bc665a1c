from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from clients.gen.llmgateway.v1 import router_pb2_grpc
from llmcore.vocabulary import ProviderName
from router_service.app import RouterApp, start_router
from router_service.providers import OllamaProvider, OpenAICompatProvider, Provider
from router_service.settings import RouterSettings
from tests.router.fake_engine import FakeEngine


@dataclass
class Harness:
    app: RouterApp
    ollama: FakeEngine
    vllm: FakeEngine
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub


def make_settings(**overrides: object) -> RouterSettings:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "retry_base_delay_s": 0.001,
        "retry_max_delay_s": 0.005,
        "grace_period_s": 1.0,
    }
    base.update(overrides)
    return RouterSettings(**base)  # type: ignore[arg-type]


async def start_harness(**overrides: object) -> Harness:
    ollama, vllm = FakeEngine("ollama"), FakeEngine("vllm")
    providers: dict[ProviderName, Provider] = {
        "ollama": OllamaProvider(ollama.client()),
        "vllm": OpenAICompatProvider(vllm.client()),
    }
    app = await start_router(make_settings(**overrides), providers)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    stub = router_pb2_grpc.RouterServiceStub(channel)
    return Harness(app, ollama, vllm, channel, stub)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = await start_harness()
    yield h
    await h.channel.close()
    await h.app.stop(0)
