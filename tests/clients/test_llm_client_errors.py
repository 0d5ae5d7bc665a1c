"""Error statuses become typed errors carrying the router's rich details."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from clients.llm import (
    CallOptions,
    EmbeddingServiceError,
    ErrorCode,
    InvalidRequestError,
    LLMInvalidResponseError,
    LLMTimeoutError,
    LLMUnavailableError,
    ModelNotFoundError,
    OverloadedError,
    RequestCancelledError,
    RouterClient,
    RouterError,
    RouterInternalError,
    map_rpc_error,
)
from clients.llm.testing import (
    EmbedScript,
    FakeError,
    FakeRouter,
    FakeRouterServicer,
    GenerateScript,
)

S = grpc.StatusCode

RICH_CASES = [
    (S.INVALID_ARGUMENT, ErrorCode.INVALID_REQUEST, InvalidRequestError, "ERR_4000"),
    (S.NOT_FOUND, ErrorCode.MODEL_NOT_FOUND, ModelNotFoundError, "ERR_4004"),
    (S.RESOURCE_EXHAUSTED, ErrorCode.OVERLOADED, OverloadedError, "ERR_4029"),
    (S.INTERNAL, ErrorCode.ROUTER_INTERNAL, RouterInternalError, "ERR_5000"),
    (S.UNAVAILABLE, ErrorCode.LLM_UNAVAILABLE, LLMUnavailableError, "ERR_5001"),
    (S.DEADLINE_EXCEEDED, ErrorCode.LLM_TIMEOUT, LLMTimeoutError, "ERR_5002"),
    (S.INTERNAL, ErrorCode.LLM_INVALID_RESPONSE, LLMInvalidResponseError, "ERR_5003"),
    (S.UNAVAILABLE, ErrorCode.EMBEDDING_SERVICE_ERROR, EmbeddingServiceError, "ERR_5004"),
    (S.INTERNAL, ErrorCode.EMBEDDING_SERVICE_ERROR, EmbeddingServiceError, "ERR_5004"),
]


@pytest.mark.parametrize(
    "interrupt_after", [None, 0, 2], ids=["before-start", "after-start", "after-2-deltas"]
)
@pytest.mark.parametrize(
    ("status", "code", "error_type", "memos_code"),
    RICH_CASES,
    ids=[f"{c.name}-{s.name}" for s, c, _, _ in RICH_CASES],
)
async def test_generate_error_is_decoded_with_its_details(
    client: RouterClient,
    servicer: FakeRouterServicer,
    status: grpc.StatusCode,
    code: ErrorCode,
    error_type: type[RouterError],
    memos_code: str,
    interrupt_after: int | None,
) -> None:
    servicer.generate = GenerateScript(
        deltas=["Hello", ", ", "world"],
        error=FakeError(
            status, "it broke", code, provider="vllm", model="qwen3:8b", retry_after=2.5
        ),
        interrupt_after=interrupt_after,
    )
    stream = client.generate("hi")
    with pytest.raises(error_type) as caught:
        await stream.collect()
    error = caught.value
    assert type(error) is error_type
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)
    assert error.status_code is status
    assert error.code is code
    assert error.reason == code.name
    assert error.memos_code == memos_code
    assert error.provider == "vllm"
    assert error.model == "qwen3:8b"
    assert error.request_id == stream.request_id
    assert error.message == "it broke"
    assert error.retry_after == 2.5
    assert error.field_violations == []
    expected_partial = "Hello, " if interrupt_after == 2 else ""
    assert error.partial_text == expected_partial
    assert stream.partial_text == expected_partial


async def test_invalid_request_carries_field_violations(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(
            S.INVALID_ARGUMENT,
            "invalid request field(s) prompt, options.temperature",
            ErrorCode.INVALID_REQUEST,
            field_violations=[
                ("prompt", "give prompt or messages"),
                ("options.temperature", "must be in [0, 2]"),
            ],
        )
    )
    with pytest.raises(InvalidRequestError) as caught:
        await client.generate("", temperature=9.0).collect()
    error = caught.value
    assert error.field_violations == [
        ("prompt", "give prompt or messages"),
        ("options.temperature", "must be in [0, 2]"),
    ]
    assert error.retry_after is None
    assert error.provider is None
    assert error.model is None
    text = str(error)
    assert text.startswith("INVALID_REQUEST ERR_4000 (grpc INVALID_ARGUMENT): invalid request")
    assert f"request_id={error.request_id}" in text
    assert "; invalid prompt: give prompt or messages; options.temperature: must be" in text


async def test_router_named_request_id_wins_over_the_clients(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(S.UNAVAILABLE, "down", ErrorCode.LLM_UNAVAILABLE, request_id="router-rid")
    )
    with pytest.raises(LLMUnavailableError) as caught:
        await client.generate("hi", request_id="client-rid").collect()
    assert caught.value.request_id == "router-rid"


PLAIN_CASES = [
    (S.INVALID_ARGUMENT, InvalidRequestError),
    (S.NOT_FOUND, ModelNotFoundError),
    (S.RESOURCE_EXHAUSTED, OverloadedError),
    (S.UNAVAILABLE, LLMUnavailableError),
    (S.DEADLINE_EXCEEDED, LLMTimeoutError),
    (S.INTERNAL, LLMInvalidResponseError),
    (S.DATA_LOSS, LLMInvalidResponseError),
    (S.CANCELLED, RequestCancelledError),
    (S.UNIMPLEMENTED, RouterError),
    (S.UNKNOWN, RouterError),
    (S.PERMISSION_DENIED, RouterError),
]


@pytest.mark.parametrize(
    ("status", "error_type"), PLAIN_CASES, ids=[s.name for s, _ in PLAIN_CASES]
)
async def test_status_without_details_maps_by_status_code(
    client: RouterClient,
    servicer: FakeRouterServicer,
    status: grpc.StatusCode,
    error_type: type[RouterError],
) -> None:
    servicer.generate = GenerateScript(error=FakeError(status, "plain"), interrupt_after=1)
    stream = client.generate("hi")
    with pytest.raises(error_type) as caught:
        await stream.collect()
    error = caught.value
    assert type(error) is error_type
    assert error.status_code is status
    assert (error.code, error.reason, error.memos_code) == (None, None, None)
    assert error.request_id == stream.request_id
    assert error.partial_text == "Hello"
    assert error.message == "plain"


async def test_client_deadline_is_a_timeout_error_keeping_partial_text(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["tok", "never"], hang=True, interrupt_after=1)
    stream = client.generate("hi", options=CallOptions(timeout=0.3))
    with pytest.raises(LLMTimeoutError) as caught:
        async for _ in stream:
            pass
    error = caught.value
    assert error.status_code is S.DEADLINE_EXCEEDED
    assert error.code is None
    assert error.partial_text == "tok"
    assert error.request_id == stream.request_id
    await servicer.cancelled.wait()


async def test_reading_after_an_error_raises_the_same_error(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        error=FakeError(S.UNAVAILABLE, "x", ErrorCode.LLM_UNAVAILABLE)
    )
    stream = client.generate("hi")
    with pytest.raises(LLMUnavailableError) as first:
        await stream.collect()
    with pytest.raises(LLMUnavailableError) as second:
        await stream.collect()
    assert second.value is first.value


async def test_unreachable_router_is_unavailable() -> None:
    router = FakeRouter()
    await router.start()
    target = router.target
    await router.stop()
    async with RouterClient(target, timeout=10.0) as client:
        with pytest.raises(LLMUnavailableError) as caught:
            await client.generate("hi").collect()
        with pytest.raises(LLMUnavailableError):
            await client.embed("hi")
    assert caught.value.code is None


async def test_embed_error_is_decoded(client: RouterClient, servicer: FakeRouterServicer) -> None:
    servicer.embed = EmbedScript(
        error=FakeError(
            S.UNAVAILABLE,
            "embedding engine down",
            ErrorCode.EMBEDDING_SERVICE_ERROR,
            provider="ollama",
            model="mxbai-embed-large",
        )
    )
    with pytest.raises(EmbeddingServiceError) as caught:
        await client.embed(["a"], request_id="emb-1")
    error = caught.value
    assert isinstance(error.__cause__, grpc.aio.AioRpcError)
    assert (error.memos_code, error.provider, error.model, error.request_id) == (
        "ERR_5004",
        "ollama",
        "mxbai-embed-large",
        "emb-1",
    )


async def test_embed_deadline_is_a_timeout_error(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.embed = EmbedScript(hang=True)
    with pytest.raises(LLMTimeoutError) as caught:
        await client.embed(["a"], options=CallOptions(timeout=0.2))
    assert caught.value.request_id is not None
    await servicer.cancelled.wait()


# map_rpc_error on hand-made errors: the corners a fake server does not reach.


def _aio_error(
    status: grpc.StatusCode,
    message: str,
    details: list[any_pb2.Any],
    status_code: int | None = None,
) -> grpc.aio.AioRpcError:
    rich = status_pb2.Status(
        code=status.value[0] if status_code is None else status_code,
        message=message,
        details=details,
    )
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", rich.SerializeToString()))
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), trailing, message)


def _packed(message: error_details_pb2.ErrorInfo) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def test_unknown_reason_keeps_the_reason_and_maps_by_status() -> None:
    info = error_details_pb2.ErrorInfo(
        domain="llmgateway", reason="BRAND_NEW", metadata={"code": "ERR_4999"}
    )
    error = map_rpc_error(_aio_error(S.UNAVAILABLE, "new", [_packed(info)]))
    assert type(error) is LLMUnavailableError
    assert (error.code, error.reason, error.memos_code) == (None, "BRAND_NEW", "ERR_4999")
    assert str(error).startswith("BRAND_NEW ERR_4999 (grpc UNAVAILABLE): new")


def test_error_info_of_another_domain_is_ignored() -> None:
    info = error_details_pb2.ErrorInfo(
        domain="example.com", reason="LLM_TIMEOUT", metadata={"code": "ERR_5002"}
    )
    error = map_rpc_error(_aio_error(S.NOT_FOUND, "other", [_packed(info)]), request_id="r")
    assert type(error) is ModelNotFoundError
    assert (error.code, error.memos_code, error.request_id) == (None, None, "r")


def test_details_that_contradict_the_status_are_ignored() -> None:
    info = error_details_pb2.ErrorInfo(domain="llmgateway", reason="LLM_TIMEOUT")
    error = map_rpc_error(_aio_error(S.INTERNAL, "m", [_packed(info)], status_code=4))
    assert type(error) is LLMInvalidResponseError
    assert error.code is None


def test_violations_already_in_the_message_are_not_repeated() -> None:
    error = InvalidRequestError(
        "invalid request field(s) prompt: prompt: too long",
        status_code=S.INVALID_ARGUMENT,
        code=ErrorCode.INVALID_REQUEST,
        memos_code="ERR_4000",
        field_violations=[("prompt", "too long"), ("seed", "must be positive")],
    )
    assert str(error) == (
        "INVALID_REQUEST ERR_4000 (grpc INVALID_ARGUMENT): invalid request field(s) prompt: "
        "prompt: too long; invalid seed: must be positive"
    )


def test_bare_rpc_error_maps_to_the_base_error() -> None:
    error = map_rpc_error(grpc.RpcError("boom"), request_id="r")
    assert type(error) is RouterError
    assert error.status_code is S.UNKNOWN
    assert error.message == "boom"
    assert str(error) == "UNKNOWN: boom [request_id=r]"
