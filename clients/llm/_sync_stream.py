"""The sync generate stream: typed events out of a blocking server-streaming call."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, Self

import grpc

from clients.gen.llmgateway.v1 import router_pb2
from clients.llm._convert import event_from_proto
from clients.llm._errors import RouterError, map_rpc_error
from clients.llm._stream_state import StreamState
from clients.llm._types import GenerateEvent, GenerateResult, StreamEnd, StreamStart, TextChunk

if TYPE_CHECKING:
    # grpc's stubs name the iterator-and-call object a streaming call returns _CallIterator;
    # it does not exist at runtime.
    SyncGenerateCall = grpc._CallIterator[router_pb2.GenerateResponse]


class SyncGenerateStream:
    """One streamed completion, read by blocking iteration; mirrors :class:`GenerateStream`."""

    def __init__(self, call: SyncGenerateCall, request_id: str) -> None:
        self._call = call
        self._state = StreamState(request_id)
        self._finished = False
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

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> GenerateEvent:
        if self._error is not None:
            raise self._error
        while not self._finished:
            try:
                response = next(self._call)
            except StopIteration:
                self._finished = True
                break
            except grpc.RpcError as exc:
                self._fail(
                    map_rpc_error(exc, request_id=self.request_id, partial_text=self.partial_text),
                    exc,
                )
            event = event_from_proto(response)
            if event is not None:
                self._state.add(event)
                return event
        raise StopIteration

    def text(self) -> Iterator[str]:
        """Yields the text of each chunk as it arrives."""
        for event in self:
            if isinstance(event, TextChunk):
                yield event.text

    def collect(self) -> GenerateResult:
        """Reads the rest of the stream and returns the whole completion."""
        for _ in self:
            pass
        return self._state.result()

    def cancel(self) -> None:
        """Cancels the call; reading afterwards raises :class:`RequestCancelledError`."""
        if not self._finished:
            self._call.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def _fail(self, error: RouterError, cause: BaseException) -> NoReturn:
        self._finished = True
        self._error = error
        raise error from cause
