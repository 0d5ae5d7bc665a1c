"""A fake router for tests of code that calls the router (as ``temporalio.testing`` ships).

:class:`FakeRouter` serves a scriptable :class:`FakeRouterServicer` on a real ``grpc.aio``
server bound to ``127.0.0.1:0``. Set ``servicer.generate`` / ``servicer.embed`` to a script to
stream deltas, fail with the router's rich error status (before or after some deltas) or hang
until the caller's deadline; every call received is recorded with its metadata.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from clients.llm._enums import ErrorCode, FinishReason, Provider
from clients.llm._errors import ERROR_DOMAIN
from clients.llm._options import REQUEST_ID_METADATA_KEY
from clients.llm._types import Timings, Usage

__all__ = [
    "EmbedScript",
    "FakeError",
    "FakeRouter",
    "FakeRouterServicer",
    "GenerateScript",
    "ReceivedCall",
    "rich_status",
]

_RequestT = TypeVar("_RequestT")
# Any: the generated servicer types its context loosely, and one helper serves both RPCs.
_Context = grpc.aio.ServicerContext[Any, Any]


def rich_status(
    status_code: grpc.StatusCode,
    message: str,
    *,
    error_code: ErrorCode,
    memos_code: str | None = None,
    provider: str = "",
    model: str = "",
    request_id: str = "",
    field_violations: Sequence[tuple[str, str]] = (),
    retry_after: float | None = None,
) -> grpc.Status:
    """An error status as the router sends it: ErrorInfo, plus BadRequest and RetryInfo if given.

    ``memos_code`` defaults to the code's own (``ERR_5001``, ``ERR_4000``, ...).
    """
    info = error_details_pb2.ErrorInfo(
        domain=ERROR_DOMAIN,
        reason=error_code.name,
        metadata={
            "code": memos_code or error_code.memos_code,
            "provider": provider,
            "model": model,
            "request_id": request_id,
        },
    )
    details = [info]
    if field_violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in field_violations
                ]
            )
        )
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(code=status_code.value[0], message=message, details=packed)
    result: grpc.Status = rpc_status.to_status(status)
    return result


@dataclass(frozen=True, slots=True)
class FakeError:
    """How a scripted call fails. ``error_code=None`` sends a plain status without details."""

    status_code: grpc.StatusCode
    message: str
    error_code: ErrorCode | None = None
    memos_code: str | None = None
    provider: str = ""
    model: str = ""
    request_id: str | None = None
    """None: the request id the fake received."""
    field_violations: Sequence[tuple[str, str]] = ()
    retry_after: float | None = None

    async def abort(self, context: _Context, request_id: str) -> None:
        """Ends the call with this error."""
        if self.error_code is None:
            await context.abort(self.status_code, self.message)
        await context.abort_with_status(
            rich_status(
                self.status_code,
                self.message,
                error_code=self.error_code,
                memos_code=self.memos_code,
                provider=self.provider,
                model=self.model,
                request_id=request_id if self.request_id is None else self.request_id,
                field_violations=self.field_violations,
                retry_after=self.retry_after,
            )
        )


@dataclass(slots=True)
class GenerateScript:
    """What the fake's Generate does: start, ``deltas``, end; or an error or a hang.

    ``error``/``hang`` happen after the start event and ``interrupt_after`` deltas, or before
    the start event when ``interrupt_after`` is None.
    """

    deltas: Sequence[str] = ("Hello", ", ", "world")
    provider: Provider = Provider.VLLM
    model: str = "qwen3:8b"
    engine_model: str = "Qwen/Qwen3-8B"
    fallback: bool = False
    attempt: int = 1
    finish_reason: FinishReason = FinishReason.STOP
    usage: Usage | None = None
    """None: 3 prompt tokens and one completion token per delta."""
    timings: Timings = field(default_factory=lambda: Timings(12.5, 80.0, 40.0))
    error: FakeError | None = None
    hang: bool = False
    interrupt_after: int | None = None
    send_end: bool = True
    """False ends the stream without its end event (a truncating router)."""


@dataclass(slots=True)
class EmbedScript:
    """What the fake's Embed does: answer ``vectors`` (default a unit vector per input), fail
    with ``error`` or hang until the caller's deadline."""

    vectors: Sequence[Sequence[float]] | None = None
    provider: Provider = Provider.OLLAMA
    model: str = "mxbai-embed-large"
    prompt_tokens: int = 4
    fallback: bool = False
    total_ms: float = 5.0
    error: FakeError | None = None
    hang: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedCall(Generic[_RequestT]):
    """One call the fake received."""

    request: _RequestT
    metadata: dict[str, str]
    """Text metadata (binary ``-bin`` entries left out)."""
    time_remaining: float | None
    """Seconds to the caller's deadline when the call arrived; None without a deadline."""
    request_id: str
    """The id the fake used: the request's field, else x-request-id, else a generated one."""


class FakeRouterServicer(router_pb2_grpc.RouterServiceServicer):
    """A scriptable RouterService (the generated servicer, subclassed)."""

    def __init__(self) -> None:
        self.generate = GenerateScript()
        self.embed = EmbedScript()
        self.generate_calls: list[ReceivedCall[router_pb2.GenerateRequest]] = []
        self.embed_calls: list[ReceivedCall[router_pb2.EmbedRequest]] = []
        self.cancelled = asyncio.Event()
        """Set when a hanging call is cancelled (client cancel or deadline)."""

    status: router_pb2.GetStatusResponse = router_pb2.GetStatusResponse(
        router_id="fake", config_state="standalone", phase="FACADE"
    )
    """What ``GetStatus`` answers."""

    async def GetStatus(
        self,
        request: router_pb2.GetStatusRequest,
        context: grpc.aio.ServicerContext[
            router_pb2.GetStatusRequest, router_pb2.GetStatusResponse
        ],
    ) -> router_pb2.GetStatusResponse:
        return self.status

    async def Generate(
        self,
        request: router_pb2.GenerateRequest,
        context: _Context,
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        script = self.generate
        call = _received(request, context)
        self.generate_calls.append(call)
        if script.interrupt_after is None:
            await self._interrupt(script.error, script.hang, context, call.request_id)
        yield router_pb2.GenerateResponse(
            start=router_pb2.GenerateStart(
                request_id=call.request_id,
                provider=common_pb2.Provider.Value("PROVIDER_" + script.provider.name),
                model=script.model,
                engine_model=script.engine_model,
                fallback=script.fallback,
                attempt=script.attempt,
            )
        )
        for index, text in enumerate(script.deltas):
            if index == script.interrupt_after:
                await self._interrupt(script.error, script.hang, context, call.request_id)
            yield router_pb2.GenerateResponse(delta=router_pb2.TextDelta(text=text))
        if script.interrupt_after is not None and script.interrupt_after >= len(script.deltas):
            await self._interrupt(script.error, script.hang, context, call.request_id)
        if script.send_end:
            usage = script.usage or Usage(3, len(script.deltas), 3 + len(script.deltas))
            yield router_pb2.GenerateResponse(
                end=router_pb2.GenerateEnd(
                    finish_reason=router_pb2.FinishReason.Value(
                        "FINISH_REASON_" + script.finish_reason.name
                    ),
                    usage=router_pb2.Usage(
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                        total_tokens=usage.total_tokens,
                    ),
                    timings=router_pb2.Timings(
                        time_to_first_token_ms=script.timings.time_to_first_token_ms,
                        total_ms=script.timings.total_ms,
                        tokens_per_second=script.timings.tokens_per_second,
                    ),
                )
            )

    async def Embed(
        self,
        request: router_pb2.EmbedRequest,
        context: _Context,
    ) -> router_pb2.EmbedResponse:
        script = self.embed
        call = _received(request, context)
        self.embed_calls.append(call)
        await self._interrupt(script.error, script.hang, context, call.request_id)
        vectors = script.vectors or [[0.5, 0.5, 0.5, 0.5] for _ in request.inputs]
        return router_pb2.EmbedResponse(
            request_id=call.request_id,
            provider=common_pb2.Provider.Value("PROVIDER_" + script.provider.name),
            model=script.model,
            embeddings=[router_pb2.Embedding(values=list(v)) for v in vectors],
            prompt_tokens=script.prompt_tokens,
            fallback=script.fallback,
            total_ms=script.total_ms,
        )

    async def _interrupt(
        self,
        error: FakeError | None,
        hang: bool,
        context: _Context,
        request_id: str,
    ) -> None:
        if error is not None:
            await error.abort(context, request_id)
        if hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise


def _received(request: _RequestT, context: _Context) -> ReceivedCall[_RequestT]:
    metadata = {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }
    request_id = (
        getattr(request, "request_id", "")
        or metadata.get(REQUEST_ID_METADATA_KEY)
        or f"fake-{uuid.uuid4().hex}"
    )
    return ReceivedCall(request, metadata, context.time_remaining(), request_id)


class FakeRouter:
    """A :class:`FakeRouterServicer` served on ``127.0.0.1:0``; an async context manager."""

    def __init__(self, servicer: FakeRouterServicer | None = None) -> None:
        self.servicer = servicer or FakeRouterServicer()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        """``host:port`` to connect to."""
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Starts serving on a free port."""
        server = grpc.aio.server()
        router_pb2_grpc.add_RouterServiceServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stops serving, cancelling calls in flight."""
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
