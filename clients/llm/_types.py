"""Plain result types: what the client returns instead of proto messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from clients.llm._enums import ErrorCode, FinishReason, Provider, RoleLike
from clients.llm._features import Image, ToolCall


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn; ``role`` accepts a :class:`Role`, a name ("user") or a proto value.

    ``images`` go on a user turn (vision models), ``tool_calls`` and ``reasoning`` on a previous
    assistant turn, ``tool_call_id`` (and optionally ``tool_name``) on a tool result."""

    role: RoleLike
    content: str = ""
    images: Sequence[Image] = ()
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str = ""
    tool_name: str = ""
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """An alternative token at one position."""

    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token with its log probability and the top alternatives."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the engine."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    """The part of completion_tokens spent thinking."""


@dataclass(frozen=True, slots=True)
class Timings:
    """The router's measurements of one generation."""

    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0
    time_to_first_reasoning_ms: float = 0.0
    """0 when the model did not think."""
    time_to_first_answer_ms: float = 0.0
    """The first text or tool-call token; 0 when there was none."""


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The first event of a generate stream: who answers."""

    request_id: str
    provider: Provider
    model: str
    engine_model: str
    fallback: bool
    attempt: int


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Newly generated answer text (never reasoning)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ReasoningChunk:
    """Newly generated thinking, apart from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallChunk:
    """A fragment of a tool call; the first of a call (by ``index``) has its id and name."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Continuation:
    """An engine failed mid-stream and another continued the answer from the text already sent
    (the stream's text is still one answer, without a repeat or a gap)."""

    from_provider: Provider
    reason: ErrorCode | None  # None for a code this client does not know
    provider: Provider
    model: str
    engine_model: str
    offset_chars: int  # characters already streamed when the continuation began


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a successful generate stream."""

    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    continuations: tuple[Continuation, ...] = ()
    raw_finish_reason: str = ""
    """The engine's own word (Ollama done_reason, vLLM finish_reason)."""
    stop_sequence: str = ""
    """The stop string that ended the answer, when the engine reports it."""


GenerateEvent: TypeAlias = StreamStart | TextChunk | ReasoningChunk | ToolCallChunk | StreamEnd
"""One event of a generate stream."""


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """A whole completion, collected from a generate stream."""

    request_id: str
    provider: Provider
    model: str
    engine_model: str
    fallback: bool
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    attempt: int = 1
    # Each engine change after text was streamed (empty: one engine answered it all).
    continuations: tuple[Continuation, ...] = ()

    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """The calls the model made, fragments joined (finish_reason is TOOL_CALLS)."""
    raw_finish_reason: str = ""
    stop_sequence: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def continued(self) -> bool:
        return bool(self.continuations)


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """One embedding per input text, in input order."""

    request_id: str
    provider: Provider
    model: str
    embeddings: list[list[float]]
    prompt_tokens: int = 0
    fallback: bool = False
    total_ms: float = 0.0
