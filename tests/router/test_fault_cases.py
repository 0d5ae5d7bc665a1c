"""The fault matrix's cases that need more than one request: a half-open breaker whose probe
stalls, 200 cancelled calls in a row, the client's deadline while the engine is silent or
streaming, and the pushed flags that tune (or turn off) what the router does about stalls.
Same stack as ``test_fault_matrix``: real sockets, a real router, a real control service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.state import RolloutStatus
from llmcore.vocabulary import ProviderName
from router_service.breaker import BreakerState
from tests.control.conftest import violations
from tests.router.fault_engine import ANSWER, Fault
from tests.router.fault_stack import FIRST_TOKEN_S, IDLE_S, PROTO, Stack, start_stack

FULL = "".join(ANSWER)
FLAVORS = ["ollama", "vllm"]
OTHER: dict[ProviderName, ProviderName] = {"ollama": "vllm", "vllm": "ollama"}


async def _stack(tmp_path: Path, flavor: ProviderName, **router: Any) -> Stack:
    stack = await start_stack(tmp_path, **router)
    if flavor == "vllm":
        await stack.split(99)
    return stack


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_half_open_probe_that_stalls_before_its_first_token(
    tmp_path: Path, flavor: ProviderName
) -> None:
    stack = await _stack(tmp_path, flavor, breaker_failure_threshold=1, breaker_open_s=30)
    try:
        bad = stack.engines[flavor]
        bad.default = Fault("html502")
        assert (await stack.generate("trip", provider=flavor)).error is not None
        breaker = stack.router.servicer._dispatcher.breakers[flavor]
        assert breaker.state is BreakerState.OPEN
        breaker.opened_at -= 30  # the open period is over: the next request is the probe
        bad.default = Fault("hang")
        probe = asyncio.create_task(stack.generate("probe"))
        await bad.wait_for(lambda: bad.active == 1)
        # While the probe waits, the others are not held: the fallback answers them at once.
        others = await asyncio.gather(*(stack.generate(f"o{i}") for i in range(5)))
        assert probe.done() is False
        for r in others:
            assert r.error is None
            assert r.collected.start.provider == PROTO[OTHER[flavor]]
            assert r.elapsed_s < FIRST_TOKEN_S
        # The probe is bounded by the first-token timeout; its user gets the fallback's answer.
        result = await probe
        assert result.error is None
        assert result.collected.text == FULL
        assert result.elapsed_s < FIRST_TOKEN_S + 2.0
        assert breaker.state is BreakerState.OPEN  # the probe failed: open again
        assert stack.of(flavor) == ["engine_error", "first_token_timeout"]
        await bad.wait_idle()
    finally:
        await stack.close()


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_half_open_probe_that_stalls_after_its_first_token(
    tmp_path: Path, flavor: ProviderName
) -> None:
    stack = await _stack(tmp_path, flavor, breaker_failure_threshold=1, breaker_open_s=30)
    try:
        bad = stack.engines[flavor]
        bad.default = Fault("html502")
        await stack.generate("trip", provider=flavor)
        breaker = stack.router.servicer._dispatcher.breakers[flavor]
        breaker.opened_at -= 30
        bad.push(Fault("stall", after=2))
        bad.default = Fault("ok")
        streaming = asyncio.Event()
        probe = asyncio.create_task(stack.generate("probe", first_delta=streaming))
        async with asyncio.timeout(5):
            await streaming.wait()
        assert breaker.state is BreakerState.CLOSED
        # The probe's first token closed the breaker: the engine serves the others meanwhile.
        others = await asyncio.gather(*(stack.generate(f"o{i}") for i in range(3)))
        assert all(r.collected.start.provider == PROTO[flavor] for r in others)
        result = await probe
        assert result.error is None
        assert result.collected.text == FULL
        assert stack.of(flavor)[-1] == "idle_timeout"
    finally:
        await stack.close()


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_200_cancelled_calls_count_nothing_and_leak_nothing(
    tmp_path: Path, flavor: ProviderName
) -> None:
    stack = await _stack(tmp_path, flavor)
    try:
        bad = stack.engines[flavor]
        bad.push(Fault("stall", after=1), Fault("stall", after=1))
        for i in range(2):  # two timeouts in a row
            await stack.generate(f"t{i}", provider=flavor)
        assert stack.router.recorder.consecutive_timeouts(flavor) == 2
        bad.default = Fault("ok", itl_s=0.05)  # each answer would take ~0.5 s
        for batch in range(10):
            results = await asyncio.gather(
                *(
                    stack.generate(f"c{batch}-{i}", provider=flavor, cancel_after_first_delta=True)
                    for i in range(20)
                )
            )
            assert all(r.collected.text and r.error is None for r in results)
        await bad.wait_idle()  # every cancelled stream was closed at the engine
        assert bad.disconnected >= 200
        await stack.wait_counted(flavor, 202)
        assert stack.of(flavor) == ["idle_timeout"] * 2 + ["cancelled"] * 200
        # Neither success nor failure: the counter is where it was, the pool is whole.
        assert stack.router.recorder.consecutive_timeouts(flavor) == 2
        pool: Any = stack.router.providers[flavor]  # an engine pool of one (issue 17)
        (replica,) = pool.replicas.values()
        transport: Any = replica.provider._client._transport
        limit = stack.router.settings.max_connections_per_backend
        assert transport._slots._value == limit  # every slot released
        if flavor == "vllm":
            await stack.decisions(5)
            assert stack.status is RolloutStatus.ACTIVE  # 2 timeouts, no errors: holds
            bad.push(Fault("stall", after=1))
            await stack.generate("t3", provider=flavor)  # the third timeout in a row
            await stack.until(lambda: stack.status is RolloutStatus.ABORTED)
    finally:
        await stack.close()


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_client_deadline_silent_is_the_engines_timeout_streaming_is_not(
    tmp_path: Path, flavor: ProviderName
) -> None:
    # Idle timeouts longer than the client's deadline: the deadline ends these calls.
    stack = await _stack(tmp_path, flavor, ollama_idle_timeout_s=30, vllm_idle_timeout_s=30)
    try:
        bad = stack.engines[flavor]
        bad.push(Fault("stall", after=2))
        silent = await stack.generate("silent", provider=flavor, deadline_s=1.0)
        assert silent.error is not None
        assert silent.error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert silent.collected.text == "The sky"
        await stack.wait_counted(flavor, 1)
        assert stack.of(flavor) == ["deadline_silent"]
        assert stack.router.recorder.consecutive_timeouts(flavor) == 1
        # Streaming steadily when the deadline comes: the client's budget, not the engine.
        bad.push(Fault("ok", itl_s=0.05, tokens=ANSWER * 10))
        streaming = await stack.generate("streaming", provider=flavor, deadline_s=1.0)
        assert streaming.error is not None
        assert streaming.error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        await stack.wait_counted(flavor, 2)
        assert stack.of(flavor) == ["deadline_silent", "deadline_streaming"]
        assert stack.router.recorder.consecutive_timeouts(flavor) == 1  # untouched
        await bad.wait_idle()
    finally:
        await stack.close()


async def test_pushed_flags_set_stream_timeouts_and_turn_continuation_off(
    tmp_path: Path,
) -> None:
    stack = await _stack(tmp_path, "vllm")
    try:
        bad = stack.engines["vllm"]
        bad.default = Fault("stall", after=2)
        flags = control_pb2.Flags(
            continuation_disabled=True,
            stream_timeouts=[
                control_pb2.StreamTimeouts(
                    task=common_pb2.TASK_ANALYSIS,
                    provider=common_pb2.PROVIDER_VLLM,
                    idle_timeout_ms=1200,
                )
            ],
        )
        await stack.update_flags(flags, ["continuation_disabled", "stream_timeouts"])
        r = await stack.generate("no-continuation")
        # Not continued: the stream that was already sending fails, after the pushed 1.2 s.
        assert r.error is not None
        assert r.error.metadata["code"] == "ERR_5002"
        assert r.collected.text == "The sky"
        assert 1.2 <= r.elapsed_s < 1.2 + 2.0
        assert stack.of("vllm") == ["idle_timeout"]
        # Bad values are refused, naming the field.
        for entry, field in (
            (
                control_pb2.StreamTimeouts(task=common_pb2.TASK_EMBEDDING, idle_timeout_ms=500),
                "task",
            ),
            (
                control_pb2.StreamTimeouts(task=common_pb2.TASK_ANALYSIS, idle_timeout_ms=5),
                "idle_timeout_ms",
            ),
            (control_pb2.StreamTimeouts(task=common_pb2.TASK_ANALYSIS), ""),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stack.update_flags(
                    control_pb2.Flags(stream_timeouts=[entry]), ["stream_timeouts"]
                )
            assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            path = "flags.stream_timeouts[0]" + (f".{field}" if field else "")
            assert violations(exc.value) == [path]
        assert IDLE_S < 1.2
    finally:
        await stack.close()
