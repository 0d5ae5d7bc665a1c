"""A fake ControlService for the router's subscriber tests: records what routers send and
pushes whatever snapshot the test queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import grpc

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from router_service.catalog import DEFAULT_ENGINE_NAMES, DEFAULT_FALLBACKS, DEFAULT_TASK_MODELS
from router_service.config.routing import TASK_NAMES

_TASK_VALUE: dict[str, common_pb2.Task.ValueType] = {
    name: common_pb2.Task.ValueType(value) for value, name in TASK_NAMES.items()
}


def make_snapshot(
    version: int,
    vllm_percent: float = 0.0,
    phase: control_pb2.Phase.ValueType = control_pb2.PHASE_FACADE,
) -> control_pb2.ConfigSnapshot:
    snap = control_pb2.ConfigSnapshot(
        version=version,
        vllm_traffic_percent=vllm_percent,
        flags=control_pb2.Flags(
            primary_provider=common_pb2.PROVIDER_OLLAMA,
            fallback_provider=common_pb2.PROVIDER_VLLM,
            embedding_provider=control_pb2.COMPONENT_PROVIDER_OLLAMA,
            shadow_provider=common_pb2.PROVIDER_VLLM,
        ),
        migration=control_pb2.MigrationState(phase=phase, status=control_pb2.ROLLOUT_STATUS_ACTIVE),
    )
    for name, engines in DEFAULT_ENGINE_NAMES.items():
        snap.catalog.models.append(
            control_pb2.ModelEntry(
                name=name,
                ollama_name=engines.get("ollama", ""),
                vllm_name=engines.get("vllm", ""),
                fallbacks=DEFAULT_FALLBACKS.get(name, []),
            )
        )
    for task, model in DEFAULT_TASK_MODELS.items():
        snap.catalog.task_models.append(control_pb2.TaskModel(task=_TASK_VALUE[task], model=model))
    return snap


class FakeControl(control_pb2_grpc.ControlServiceServicer):
    def __init__(self) -> None:
        self.hellos: list[control_pb2.RouterHello] = []
        self.acks: list[int] = []
        self.nacks: list[control_pb2.ConfigNack] = []
        self.reports: list[control_pb2.StatsReport] = []
        self.received = asyncio.Condition()
        self.outbox: asyncio.Queue[control_pb2.ConfigSnapshot] = asyncio.Queue()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async def _wait() -> None:
            async with self.received:
                await self.received.wait_for(predicate)

        await asyncio.wait_for(_wait(), within)

    async def _read(self, requests: AsyncIterator[control_pb2.RouterSessionRequest]) -> None:
        async for msg in requests:
            async with self.received:
                kind = msg.WhichOneof("message")
                if kind == "hello":
                    self.hellos.append(msg.hello)
                elif kind == "ack":
                    self.acks.append(msg.ack.version)
                elif kind == "nack":
                    self.nacks.append(msg.nack)
                elif kind == "stats":
                    self.reports.append(msg.stats)
                self.received.notify_all()

    async def RouterSession(
        self,
        request_iterator: AsyncIterator[control_pb2.RouterSessionRequest],
        context: grpc.aio.ServicerContext[
            control_pb2.RouterSessionRequest, control_pb2.RouterSessionResponse
        ],
    ) -> AsyncIterator[control_pb2.RouterSessionResponse]:
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            while True:
                snap = await self.outbox.get()
                yield control_pb2.RouterSessionResponse(snapshot=snap)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def start_fake_control(fake: FakeControl, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    control_pb2_grpc.add_ControlServiceServicer_to_server(fake, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


def new_fake_control() -> FakeControl:
    """The fake implements only RouterSession; the other RPCs answer UNIMPLEMENTED (the generated
    base class's behaviour), which the stub typing sees as abstract."""
    return FakeControl()  # type: ignore[abstract]
