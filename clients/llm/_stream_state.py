"""What a generate stream has received so far, and the result it adds up to.

Shared by the async and the sync stream so that both collect the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from clients.llm._enums import Provider
from clients.llm._errors import LLMInvalidResponseError
from clients.llm._features import ToolCall
from clients.llm._types import (
    GenerateEvent,
    GenerateResult,
    ReasoningChunk,
    StreamEnd,
    StreamStart,
    TextChunk,
    TokenLogprob,
    ToolCallChunk,
)


@dataclass(slots=True)
class StreamState:
    """Events received on one generate stream."""

    request_id: str
    """The id the client sent; replaced by the router's once the start event arrives."""
    start: StreamStart | None = None
    end: StreamEnd | None = None
    chunks: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, list[str]] = field(default_factory=dict)  # index → [id, name, arguments]
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self.chunks)

    def add(self, event: GenerateEvent) -> None:
        """Records one event."""
        if isinstance(event, StreamStart):
            self.start = event
            self.request_id = event.request_id or self.request_id
        elif isinstance(event, TextChunk):
            self.chunks.append(event.text)
            self.logprobs.extend(event.logprobs)
        elif isinstance(event, ReasoningChunk):
            self.reasoning.append(event.text)
        elif isinstance(event, ToolCallChunk):
            call = self.calls.setdefault(event.index, [event.id, event.name, ""])
            call[0] = call[0] or event.id
            call[1] = call[1] or event.name
            call[2] += event.arguments
        else:
            self.end = event

    def result(self) -> GenerateResult:
        """The collected completion.

        Raises :class:`LLMInvalidResponseError` when the stream ended without its end event: the
        router never truncates silently, so a missing end means the answer is incomplete.
        """
        if self.end is None:
            raise LLMInvalidResponseError(
                "generate stream ended without an end event",
                status_code=grpc.StatusCode.DATA_LOSS,
                request_id=self.request_id,
                partial_text=self.text,
            )
        start = self.start
        return GenerateResult(
            request_id=self.request_id,
            provider=start.provider if start else Provider.UNSPECIFIED,
            model=start.model if start else "",
            engine_model=start.engine_model if start else "",
            fallback=start.fallback if start else False,
            attempt=start.attempt if start else 0,
            text=self.text,
            finish_reason=self.end.finish_reason,
            usage=self.end.usage,
            timings=self.end.timings,
            continuations=self.end.continuations,
            reasoning="".join(self.reasoning),
            tool_calls=[ToolCall(i, n, a) for i, n, a in self.calls.values()],
            raw_finish_reason=self.end.raw_finish_reason,
            stop_sequence=self.end.stop_sequence,
            logprobs=self.logprobs,
        )
