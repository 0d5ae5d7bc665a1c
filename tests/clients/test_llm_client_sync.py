"""SyncRouterClient, run in a worker thread against the fake grpc.aio router."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clients.llm import (
    CallOptions,
    EmbeddingServiceError,
    ErrorCode,
    FinishReason,
    GenerateEvent,
    GenerateResult,
    InvalidRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    Provider,
    RequestCancelledError,
    StreamEnd,
    StreamStart,
    SyncRouterClient,
    TextChunk,
)
from clients.llm.testing import (
    EmbedScript,
    FakeError,
    FakeRouter,
    FakeRouterServicer,
    GenerateScript,
)


async def test_sync_stream_yields_the_same_events(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["a", "b"])

    def run() -> list[GenerateEvent]:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            return list(client.generate("hi", request_id="sync-1", task="analysis"))

    events = await asyncio.to_thread(run)
    assert [type(e) for e in events] == [StreamStart, TextChunk, TextChunk, StreamEnd]
    assert isinstance(events[0], StreamStart)
    assert events[0].request_id == "sync-1"
    assert events[1:3] == [TextChunk("a"), TextChunk("b")]
    (call,) = servicer.generate_calls
    assert call.metadata["x-request-id"] == "sync-1"
    assert call.request.request_id == "sync-1"


async def test_sync_collect_and_text(fake_router: FakeRouter, servicer: FakeRouterServicer) -> None:
    def run() -> tuple[list[str], GenerateResult]:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            chunks = list(client.generate("hi").text())
            return chunks, client.generate("hi").collect()

    chunks, result = await asyncio.to_thread(run)
    assert chunks == ["Hello", ", ", "world"]
    assert result.text == "Hello, world"
    assert result.provider is Provider.VLLM
    assert result.finish_reason is FinishReason.STOP
    first, second = servicer.generate_calls
    assert first.request.request_id != second.request.request_id
    assert result.request_id == second.request.request_id


async def test_sync_error_after_partial_output_keeps_the_text(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        deltas=["par", "tial", "never"],
        error=FakeError(
            grpc.StatusCode.UNAVAILABLE, "engine died", ErrorCode.LLM_UNAVAILABLE, provider="vllm"
        ),
        interrupt_after=2,
    )

    def run() -> tuple[LLMUnavailableError, str]:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            stream = client.generate("hi")
            with pytest.raises(LLMUnavailableError) as caught:
                stream.collect()
            return caught.value, stream.partial_text

    error, partial = await asyncio.to_thread(run)
    assert isinstance(error.__cause__, grpc.RpcError)
    assert error.partial_text == partial == "partial"
    assert (error.memos_code, error.provider) == ("ERR_5001", "vllm")
    assert error.request_id == servicer.generate_calls[0].request_id


async def test_sync_invalid_request_with_field_violations(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad",
            ErrorCode.INVALID_REQUEST,
            field_violations=[("messages[0].content", "must not be empty")],
        )
    )

    def run() -> InvalidRequestError:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            with pytest.raises(InvalidRequestError) as caught:
                next(iter(client.generate("hi")))
            return caught.value

    error = await asyncio.to_thread(run)
    assert error.field_violations == [("messages[0].content", "must not be empty")]


async def test_sync_deadline(fake_router: FakeRouter, servicer: FakeRouterServicer) -> None:
    servicer.generate = GenerateScript(hang=True, interrupt_after=0)

    def run() -> LLMTimeoutError:
        with SyncRouterClient(fake_router.target) as client:
            stream = client.generate("hi", options=CallOptions(timeout=0.3))
            with pytest.raises(LLMTimeoutError) as caught:
                stream.collect()
            return caught.value

    error = await asyncio.to_thread(run)
    assert error.status_code is grpc.StatusCode.DEADLINE_EXCEEDED
    await servicer.cancelled.wait()


async def test_sync_cancel(fake_router: FakeRouter, servicer: FakeRouterServicer) -> None:
    servicer.generate = GenerateScript(deltas=["first"], hang=True, interrupt_after=1)

    def run() -> RequestCancelledError:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            stream = client.generate("hi")
            for event in stream:
                if isinstance(event, TextChunk):
                    break
            stream.cancel()
            with pytest.raises(RequestCancelledError) as caught:
                stream.collect()
            return caught.value

    error = await asyncio.to_thread(run)
    assert error.partial_text == "first"
    await servicer.cancelled.wait()


async def test_sync_embed(fake_router: FakeRouter, servicer: FakeRouterServicer) -> None:
    servicer.embed = EmbedScript(vectors=[[1.0, 0.0], [0.0, 1.0]], prompt_tokens=6)

    def run() -> tuple[list[list[float]], str, int]:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            result = client.embed(["a", "b"], provider="ollama", model="mxbai-embed-large")
            return result.embeddings, result.request_id, result.prompt_tokens

    embeddings, request_id, tokens = await asyncio.to_thread(run)
    assert embeddings == [[1.0, 0.0], [0.0, 1.0]]
    assert tokens == 6
    (call,) = servicer.embed_calls
    assert list(call.request.inputs) == ["a", "b"]
    assert call.request.model == "mxbai-embed-large"
    assert call.metadata["x-request-id"] == call.request.request_id == request_id


async def test_sync_embed_error(fake_router: FakeRouter, servicer: FakeRouterServicer) -> None:
    servicer.embed = EmbedScript(
        error=FakeError(grpc.StatusCode.INTERNAL, "bad vector", ErrorCode.EMBEDDING_SERVICE_ERROR)
    )

    def run() -> EmbeddingServiceError:
        with SyncRouterClient(fake_router.target, timeout=10.0) as client:
            with pytest.raises(EmbeddingServiceError) as caught:
                client.embed("a", request_id="e-1")
            return caught.value

    error = await asyncio.to_thread(run)
    assert (error.memos_code, error.request_id) == ("ERR_5004", "e-1")
    assert isinstance(error.__cause__, grpc.RpcError)
