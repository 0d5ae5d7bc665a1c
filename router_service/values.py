"""Plain value types of the data path, shared by providers, dispatch and the servicer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", ""]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One request to one engine: the engine's model name, messages and options."""

    model: str
    messages: tuple[ChatMessage, ...]
    options: SamplingOptions
    request_id: str
    # The last message is a partial assistant answer the engine must continue, not answer
    # (continuation failover, router_service.lifecycle.continuation).
    continue_final: bool = False


@dataclass(slots=True)
class ChatChunk:
    """What an engine sent in one network read: text (``tokens`` engine events joined, so a
    relay that fell behind catches up in one message) and, at the end, finish reason and usage."""

    text: str = ""
    tokens: int = 0
    done: bool = False
    finish_reason: FinishReason = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class EmbedCall:
    model: str
    inputs: tuple[str, ...]
    request_id: str


@dataclass(slots=True)
class EmbedOutput:
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
