"""Failures: engine errors, bad lines, truncation, retries, fallbacks, cancel, deadline."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.router.conftest import Harness, start_harness
from tests.router.fake_engine import Script
from tests.router.helpers import Collected, collect, decode

VLLM = common_pb2.PROVIDER_VLLM
OLLAMA = common_pb2.PROVIDER_OLLAMA


async def _fail(
    harness: Harness, req: router_pb2.GenerateRequest
) -> tuple[Collected, grpc.aio.AioRpcError]:
    got = Collected()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(harness.stub.Generate(req), got)
    return got, info.value


@pytest.mark.parametrize("provider", [OLLAMA, VLLM])
async def test_mid_stream_engine_error_after_tokens_fails_the_stream(
    harness: Harness, provider: common_pb2.Provider.ValueType
) -> None:
    engine = harness.ollama if provider == OLLAMA else harness.vllm
    engine.push(Script(error_after=2))
    got, err = await _fail(
        harness, router_pb2.GenerateRequest(prompt="x", provider=provider, request_id="r1")
    )
    assert got.text == "Hello,"  # what was sent stays sent; the status says it is incomplete
    d = decode(err)
    assert d.code == grpc.StatusCode.INTERNAL
    assert d.reason == "LLM_INVALID_RESPONSE"
    assert d.metadata["code"] == "ERR_5003"
    assert d.metadata["request_id"] == "r1"
    assert d.metadata["model"] == "qwen3:8b"
    assert d.metadata["provider"] == ("ollama" if provider == OLLAMA else "vllm")
    assert len(engine.seen) == 1  # no retry after the first token


async def test_flat_vllm_error_format_is_parsed(harness: Harness) -> None:
    harness.vllm.push(Script(error_after=1, flat_vllm_error=True))
    _, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", provider=VLLM))
    assert "engine exploded" in (err.details() or "")


@pytest.mark.parametrize("provider", [OLLAMA, VLLM])
async def test_malformed_line_after_tokens(
    harness: Harness, provider: common_pb2.Provider.ValueType
) -> None:
    engine = harness.ollama if provider == OLLAMA else harness.vllm
    engine.push(Script(malformed_after=1))
    got, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", provider=provider))
    assert got.text == "Hello"
    assert decode(err).metadata["code"] == "ERR_5003"


@pytest.mark.parametrize("provider", [OLLAMA, VLLM])
async def test_truncated_stream_is_never_silent(
    harness: Harness, provider: common_pb2.Provider.ValueType
) -> None:
    engine = harness.ollama if provider == OLLAMA else harness.vllm
    engine.push(Script(truncate_after=3))
    got, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", provider=provider))
    assert got.kinds[-1] == "delta"
    d = decode(err)
    assert (d.code, d.metadata["code"]) == (grpc.StatusCode.UNAVAILABLE, "ERR_5001")


async def test_error_before_first_token_is_retried_and_counted(harness: Harness) -> None:
    harness.ollama.push(Script(status=503), Script(malformed_after=0))
    got = await collect(
        harness.stub.Generate(router_pb2.GenerateRequest(prompt="x", provider=OLLAMA))
    )
    assert got.text == "Hello, world!"
    assert got.start.attempt == 3
    assert not got.start.fallback
    assert len(harness.ollama.seen) == 3
    assert harness.app.stats.retries["ollama"] == 2


async def test_non_retryable_400_is_not_retried(harness: Harness) -> None:
    harness.vllm.push(
        Script(
            status=400,
            error_body={
                "error": {
                    "message": "This model's maximum context length is 8 tokens",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
        )
    )
    _, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", provider=VLLM))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "maximum context length" in (err.details() or "")
    assert len(harness.vllm.seen) == 1


async def test_retries_exhausted_then_provider_fallback(harness: Harness) -> None:
    harness.ollama.default = Script(connect_error=True)
    got = await collect(harness.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
    assert got.start.provider == VLLM
    assert got.start.fallback
    assert got.start.model == "qwen3:8b"
    assert len(harness.ollama.seen) == 3  # three attempts, then the engine counts as down
    assert harness.vllm.models_seen == ["Qwen/Qwen3-8B"]
    assert harness.app.stats.fallbacks["vllm"] == 1


async def test_model_fallback_chain_order(harness: Harness) -> None:
    missing = Script(status=404, error_body={"error": "model 'x' not found"})
    harness.ollama.push(missing, missing)
    got = await collect(
        harness.stub.Generate(router_pb2.GenerateRequest(prompt="x", model="qwen3:8b"))
    )
    # seed model_fallbacks: qwen3:8b → llama3.2:3b → gemma3:4b
    assert harness.ollama.models_seen == ["qwen3:8b", "llama3.2:3b", "gemma3:4b"]
    assert got.start.model == "gemma3:4b"
    assert got.start.fallback


async def test_chain_exhausted_on_both_engines_is_not_found(harness: Harness) -> None:
    missing = Script(status=404)
    harness.ollama.default = missing
    harness.vllm.default = missing
    _, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", model="gemma3:4b"))
    d = decode(err)
    assert d.code == grpc.StatusCode.NOT_FOUND
    assert d.reason == "MODEL_NOT_FOUND"
    assert harness.ollama.models_seen == ["gemma3:4b"]
    assert harness.vllm.models_seen == ["google/gemma-3-4b-it"]


async def test_pinned_provider_does_not_fall_back(harness: Harness) -> None:
    harness.vllm.default = Script(connect_error=True)
    _, err = await _fail(harness, router_pb2.GenerateRequest(prompt="x", provider=VLLM))
    d = decode(err)
    assert (d.code, d.metadata["code"], d.metadata["provider"]) == (
        grpc.StatusCode.UNAVAILABLE,
        "ERR_5001",
        "vllm",
    )
    assert harness.ollama.seen == []


async def test_cancel_closes_the_backend_stream(harness: Harness) -> None:
    harness.ollama.push(Script(hang_after=2))
    call = harness.stub.Generate(router_pb2.GenerateRequest(prompt="x"))
    got = [await call.read(), await call.read()]
    assert isinstance(got[1], router_pb2.GenerateResponse)
    assert got[1].delta.text == "Hello"
    call.cancel()
    await asyncio.wait_for(harness.ollama.closed_early.wait(), timeout=5)
    assert await call.code() == grpc.StatusCode.CANCELLED


async def test_client_deadline_bounds_the_backend_call(harness: Harness) -> None:
    harness.vllm.push(Script(hang_after=1))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(
            harness.stub.Generate(
                router_pb2.GenerateRequest(prompt="x", provider=VLLM), timeout=0.5
            )
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(harness.vllm.closed_early.wait(), timeout=5)


async def test_admission_sheds_beyond_the_limit() -> None:
    h = await start_harness(max_concurrent_requests=1)
    try:
        h.ollama.push(Script(hang_after=1))
        first = h.stub.Generate(router_pb2.GenerateRequest(prompt="x"))
        await first.read()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="y")))
        d = decode(info.value)
        assert (d.code, d.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")
        first.cancel()
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def test_graceful_stop_lets_in_flight_stream_finish() -> None:
    h = await start_harness()
    gate = asyncio.Event()
    original = h.ollama._stream

    async def slow(lines: list[bytes], script: Script):  # type: ignore[no-untyped-def]
        async for line in original(lines, script):
            if b'"done": true' in line:
                await gate.wait()
            yield line

    h.ollama._stream = slow  # type: ignore[method-assign]
    call = h.stub.Generate(router_pb2.GenerateRequest(prompt="x"))
    first = await call.read()
    assert isinstance(first, router_pb2.GenerateResponse)
    assert first.HasField("start")
    stopping = asyncio.create_task(h.app.stop(5))
    await asyncio.sleep(0)  # let stop() begin refusing new calls
    gate.set()
    kinds = []
    while isinstance(msg := await call.read(), router_pb2.GenerateResponse):
        kinds.append(msg.WhichOneof("event"))
    assert kinds[-1] == "end"
    assert await call.code() == grpc.StatusCode.OK
    await stopping
    await h.channel.close()
