"""Plain result types: what the client returns instead of proto messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from clients.llm._enums import ErrorCode, FinishReason, Provider, RoleLike


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn; ``role`` accepts a :class:`Role`, a name ("user") or a proto value."""

    role: RoleLike
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the engine."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timings:
    """The router's measurements of one generation."""

    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0


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
    """Newly generated text."""

    text: str


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


GenerateEvent: TypeAlias = StreamStart | TextChunk | StreamEnd
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
