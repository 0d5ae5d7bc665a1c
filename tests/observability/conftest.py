"""A router (tracing to a real in-process OTLP receiver, metrics on a free port) in front of
the Ollama and vLLM simulators, and a traced client library."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from clients.llm import RouterClient
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.telemetry import new_tracer_provider
from tests.observability._otlp import Receiver, RunningReceiver, start_receiver
from tests.router.conftest import make_settings


@dataclass
class TracedStack:
    receiver: Receiver
    server: RunningReceiver
    ollama: RunningSimulator
    vllm: RunningSimulator
    app: RouterApp
    client_tp: TracerProvider
    client: RouterClient

    async def flush(self) -> None:
        # Off the loop: the exporters block until the receiver answers.
        tp = self.app.tracer_provider
        assert tp is not None
        await asyncio.to_thread(self.client_tp.force_flush)
        await asyncio.to_thread(tp.force_flush)


async def start_traced_stack(ollama: dict[str, Any] | None = None, **settings: Any) -> TracedStack:
    server = start_receiver()
    receiver, endpoint = server.receiver, server.endpoint
    o = await start_simulator(SimConfig(flavor=Flavor.OLLAMA, **(ollama or {})))
    v = await start_simulator(SimConfig(flavor=Flavor.VLLM))
    base: dict[str, Any] = {
        "ollama_base_url": o.base_url,
        "vllm_base_url": v.base_url,
        "otlp_endpoint": endpoint,  # the router builds its own provider from its settings
        "metrics_port": 0,
        "retry_attempts": 2,
        "breaker_failure_threshold": 1000,
    }
    base.update(settings)
    app = await start_router(make_settings(**base))
    client_tp = new_tracer_provider("test-client")
    # Batch: the client's export must not block the test's loop on every span.
    client_tp.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
    )
    client = RouterClient(f"127.0.0.1:{app.port}", tracer_provider=client_tp)
    return TracedStack(receiver, server, o, v, app, client_tp, client)


async def stop_traced_stack(s: TracedStack) -> None:
    await s.client.close()
    await s.app.stop(0)
    s.client_tp.shutdown()
    await s.ollama.stop()
    await s.vllm.stop()
    s.server.stop()


@pytest.fixture
async def stack() -> AsyncIterator[TracedStack]:
    s = await start_traced_stack()
    yield s
    await stop_traced_stack(s)
