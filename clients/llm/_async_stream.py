"""The async generate stream: typed events out of a ``grpc.aio`` server-streaming call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import NoReturn, Self

import grpc
import grpc.aio

from clients.gen.llmgateway.v1 import router_pb2
from clients.llm._convert import event_from_proto
from clients.llm._errors import RequestCancelledError, RouterError, map_rpc_error
from clients.llm._stream_state import StreamState
from clients.llm._types import GenerateEvent, GenerateResult, StreamEnd, StreamStart, TextChunk

GenerateCall = grpc.aio.UnaryStreamCall[router_pb2.GenerateRequest, router_pb2.GenerateResponse]


class GenerateStream:
    """One streamed completion.

    Iterate it for :class:`StreamStart`, :class:`TextChunk` and :class:`StreamEnd` events, or
    use :meth:`text` for the text alone, or :meth:`collect` for the whole result. Iteration may
    be stopped and resumed; :meth:`collect` reads what is left. A failure raises a
    :class:`RouterError` whose ``partial_text`` holds the text received before it (also
    :attr:`partial_text` here). Use it as an async context manager to cancel the call when
    leaving early.
    """

    def __init__(self, call: GenerateCall, request_id: str) -> None:
        self._call = call
        self._state = StreamState(request_id)
        self._finished = False
        self._cancelled_here = False
        self._error: RouterError | None = None

    @property
    def request_id(self) -> str:
        """The request id (the router's once the start event has arrived)."""
        return self._state.request_id

    @property
    def start(self) -> StreamStart | None:
        """The start event, once received."""
        return self._state.start

    @property
    def end(self) -> StreamEnd | None:
        """The end event, once received."""
        return self._state.end

    @property
    def partial_text(self) -> str:
        """The text received so far."""
        return self._state.text

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> GenerateEvent:
        if self._error is not None:
            raise self._error
        while not self._finished:
            try:
                response = await self._call.read()
            except grpc.aio.AioRpcError as exc:
                self._fail(
                    map_rpc_error(exc, request_id=self.request_id, partial_text=self.partial_text),
                    exc,
                )
            except asyncio.CancelledError as exc:
                # grpc.aio raises CancelledError from read() once the call was cancelled
                # locally; only a cancel() of ours is an RPC outcome, a task cancel propagates.
                if not self._cancelled_here:
                    raise
                self._fail(self._cancelled_error(), exc)
            if not isinstance(response, router_pb2.GenerateResponse):  # grpc.aio.EOF
                self._finished = True
                if self._cancelled_here and self._state.end is None:
                    self._fail(self._cancelled_error(), None)
                break
            event = event_from_proto(response)
            if event is not None:
                self._state.add(event)
                return event
        raise StopAsyncIteration

    async def text(self) -> AsyncIterator[str]:
        """Yields the text of each chunk as it arrives."""
        async for event in self:
            if isinstance(event, TextChunk):
                yield event.text

    async def collect(self) -> GenerateResult:
        """Reads the rest of the stream and returns the whole completion."""
        async for _ in self:
            pass
        return self._state.result()

    def cancel(self) -> None:
        """Cancels the call; reading afterwards raises :class:`RequestCancelledError`."""
        if not self._finished:
            self._cancelled_here = True
            self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def _fail(self, error: RouterError, cause: BaseException | None) -> NoReturn:
        self._finished = True
        self._error = error
        raise error from cause

    def _cancelled_error(self) -> RequestCancelledError:
        return RequestCancelledError(
            "generate call cancelled by the client",
            status_code=grpc.StatusCode.CANCELLED,
            request_id=self.request_id,
            partial_text=self.partial_text,
        )
