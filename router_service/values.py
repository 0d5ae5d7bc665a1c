"""Plain value types of the data path, shared by providers, dispatch and the servicer."""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(slots=True)
class Route:
    """One request's placement context inside an engine pool (router_service.pools), shared by
    all its attempts: the same object rides on every ``ChatCall``/``EmbedCall`` of the request.

    ``key`` is the caller's routing key (memOS's query id: episode affinity), "" when it sent
    none. The pool adds each replica it sends an attempt to in ``tried``, so a retry goes to
    another replica; ``on_timeout`` is set by the pool for the attempt in flight, so a stream
    timeout the dispatcher detects counts against that replica.
    """

    key: str = ""
    tried: set[str] = field(default_factory=set)
    on_timeout: Callable[[], None] | None = None

    def timed_out(self) -> None:
        if self.on_timeout is not None:
            self.on_timeout()


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
    # Placement inside an engine pool (issue 17); None: a fresh context per call.
    route: Route | None = field(default=None, compare=False)


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
    route: Route | None = field(default=None, compare=False)  # as ChatCall.route


@dataclass(slots=True)
class EmbedOutput:
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
