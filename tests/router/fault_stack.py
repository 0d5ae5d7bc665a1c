"""The fault matrix's stack: two ``FaultEngine``s (real HTTP, port 0), a real control service
in-process (evaluating the rollback rules every 50 ms) and one real router connected to it, with
stream timeouts short enough that the whole matrix runs in seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import field_mask_pb2
from grpc_status import rpc_status

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2, router_pb2_grpc
from control_service.state import RolloutStatus
from llmcore.vocabulary import ProviderName, TaskName
from router_service.app import RouterApp, start_router
from router_service.lifecycle import AttemptOutcome
from router_service.settings import RouterSettings
from router_service.split import in_share
from tests.control.conftest import Control, start
from tests.router.fault_engine import FaultEngine
from tests.router.helpers import Collected, Decoded, decode

FIRST_TOKEN_S = 0.3
IDLE_S = 0.3
ATTEMPTS = 2
ROLLBACK = control_pb2.RollbackThresholds(
    error_rate=0.05,
    latency_p95_ms=600_000,
    embed_latency_p95_ms=600_000,
    consecutive_timeouts=3,
    window_seconds=10,
    min_requests=3,
    cooldown_seconds=0,
    max_automatic_rollbacks=5,
    timeout_routers_required=1,
    health_failure_threshold=2,
    health_success_threshold=1,
)
PROTO: dict[ProviderName, common_pb2.Provider.ValueType] = {
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}


def _meta(reason: str) -> control_pb2.ChangeMeta:
    return control_pb2.ChangeMeta(actor="operator", reason=reason)


@dataclass
class Result:
    """What one Generate call gave its user."""

    collected: Collected
    elapsed_s: float
    error: Decoded | None = None
    trailers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stack:
    engines: dict[ProviderName, FaultEngine]
    control: Control
    router: RouterApp
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    counted: asyncio.Event = field(default_factory=asyncio.Event)  # set at each outcome

    def of(self, provider: ProviderName) -> list[str]:
        """The outcomes counted against ``provider``, in order."""
        return [o.outcome.value for o in self.outcomes if o.provider == provider]

    @property
    def status(self) -> RolloutStatus:
        return self.control.app.controller.current.state.migration.status

    async def generate(
        self,
        request_id: str,
        provider: ProviderName | None = None,
        deadline_s: float = 10.0,
        cancel_after_first_delta: bool = False,
        first_delta: asyncio.Event | None = None,
    ) -> Result:
        req = router_pb2.GenerateRequest(
            request_id=request_id,
            messages=[router_pb2.Message(role=router_pb2.ROLE_USER, content="Why is it blue?")],
            routing_key=self.vllm_key(request_id),
            provider=PROTO[provider] if provider else common_pb2.PROVIDER_UNSPECIFIED,
        )
        out = Collected()
        t0 = time.monotonic()
        call = self.stub.Generate(req, timeout=deadline_s)
        try:
            async for msg in call:
                out.messages.append(msg)
                if first_delta is not None and msg.HasField("delta"):
                    first_delta.set()
                if cancel_after_first_delta and msg.HasField("delta"):
                    call.cancel()
                    break
        except grpc.aio.AioRpcError as err:
            trailers = {k: str(v) for k, v in (err.trailing_metadata() or ())}
            if rpc_status.from_call(err) is None:  # the client's own deadline: no details
                plain = Decoded(err.code(), err.details() or "", "", {}, [])
                return Result(out, time.monotonic() - t0, plain, trailers)
            return Result(out, time.monotonic() - t0, decode(err), trailers)
        return Result(out, time.monotonic() - t0)

    async def wait_counted(self, provider: ProviderName, n: int, within: float = 5.0) -> None:
        """Until ``n`` outcomes were counted against ``provider`` (the servicer counts a
        cancelled call after the client has already moved on)."""
        async with asyncio.timeout(within):
            while len(self.of(provider)) < n:
                self.counted.clear()
                await self.counted.wait()

    def vllm_key(self, base: str) -> str:
        """A routing key the current split sends to vLLM, when it sends any there."""
        percent = self.router.config.current.vllm_percent
        for i in range(1000):
            key = f"{base}-{i}"
            if percent == 0 or in_share(key, percent):
                return key
        raise AssertionError("no routing key in vLLM's share")

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            await self.control.app.hub.wait_for(predicate)

    async def decisions(self, n: int, within: float = 5.0) -> None:
        """Wait for ``n`` more evaluations of the rollback rules."""
        loop = self.control.app.rollback
        assert loop is not None
        seen: list[object] = []
        done = asyncio.Event()

        def observe(d: object) -> None:
            seen.append(d)
            if len(seen) >= n:
                done.set()

        loop.observers.append(observe)
        try:
            async with asyncio.timeout(within):
                await done.wait()
        finally:
            loop.observers.remove(observe)

    async def split(self, weight: int) -> None:
        stub = self.control.stub
        await stub.Promote(control_pb2.PromoteRequest(meta=_meta("shadow")))
        await stub.SetWeight(
            control_pb2.SetWeightRequest(meta=_meta("split"), weight_percent=weight)
        )
        await self.synced()

    async def synced(self) -> None:
        version = self.control.app.controller.current.version
        await self.until(lambda: self.router.config.current.version == version)

    async def update_flags(self, flags: control_pb2.Flags, paths: list[str]) -> None:
        await self.control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=_meta("test"),
                flags=flags,
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            )
        )
        await self.synced()

    async def close(self) -> None:
        await self.channel.close()
        await self.router.stop(0)
        await self.control.close()
        for e in self.engines.values():
            await e.stop()


async def start_stack(tmp_path: Path, **router: Any) -> Stack:
    engines: dict[ProviderName, FaultEngine] = {
        "ollama": await FaultEngine("ollama").start(),
        "vllm": await FaultEngine("vllm").start(),
    }
    control = await start(
        tmp_path / "control.db",
        transport=httpx.AsyncHTTPTransport(),
        ollama_base_url=engines["ollama"].base_url,
        vllm_base_url=engines["vllm"].base_url,
        evaluation_interval_s=0.05,
        stats_slot_s=0.5,
        probe_timeout_s=0.5,
    )
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "ollama_base_url": engines["ollama"].base_url,
        "vllm_base_url": engines["vllm"].base_url,
        "control_address": control.target,
        "router_id": "fm",
        "config_cache_path": tmp_path / "router.snapshot",
        "stats_report_interval_s": 0.05,
        "retry_attempts": ATTEMPTS,
        "retry_base_delay_s": 0.001,
        "retry_max_delay_s": 0.002,
        "ollama_first_token_timeout_s": FIRST_TOKEN_S,
        "vllm_first_token_timeout_s": FIRST_TOKEN_S,
        "ollama_idle_timeout_s": IDLE_S,
        "vllm_idle_timeout_s": IDLE_S,
        "deadline_silent_after_s": 0.25,
        "breaker_failure_threshold": 1000,
        "grace_period_s": 0.2,
        **router,
    }
    app = await start_router(RouterSettings(**settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    stack = Stack(engines, control, app, channel, router_pb2_grpc.RouterServiceStub(channel))

    def observe(task: TaskName, outcome: AttemptOutcome) -> None:
        stack.outcomes.append(outcome)
        stack.counted.set()

    app.recorder.outcome_observers.append(observe)
    await stack.update_flags(control_pb2.Flags(rollback=ROLLBACK), ["rollback"])
    return stack
