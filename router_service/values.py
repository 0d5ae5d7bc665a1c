"""Plain value types of the data path, shared by providers, dispatch and the servicer."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

from llmcore.features import EngineOption as EngineOption
from llmcore.features import Reasoning as Reasoning
from llmcore.features import ReasoningLevel as ReasoningLevel
from llmcore.features import ResponseFormat as ResponseFormat

FinishReason = Literal["stop", "length", "tool_calls", "cancelled", ""]
Role = Literal["system", "user", "assistant", "tool"]
ToolChoiceMode = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True, slots=True)
class Image:
    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete call, as kept in the history: ``arguments`` is the arguments object as JSON."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    tool_name: str = ""
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: str  # the parameters JSON Schema as canonical JSON text


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode = "auto"
    name: str = ""


@dataclass(frozen=True, slots=True)
class Features:
    """What a request asks of the model beyond plain text. Defaults are "nothing asked"."""

    reasoning: Reasoning = field(default_factory=Reasoning)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    # Validated against the allowlist (llmcore.features), typed, sorted by key. The request's
    # own: an engine that does not know one cannot serve the request. The task's defaults:
    # each engine gets those it knows.
    engine_options: tuple[tuple[str, EngineOption], ...] = ()
    default_options: tuple[tuple[str, EngineOption], ...] = ()

    @property
    def constrained(self) -> bool:
        """The output is constrained (JSON or tools): a retry must be a fresh request and a
        partial answer can never be continued elsewhere."""
        return self.response_format.kind != "text" or bool(self.tools)

    def options_for(self, known: AbstractSet[str]) -> dict[str, EngineOption]:
        """The options one engine gets: the task defaults it knows, then the request's own."""
        out = {k: v for k, v in self.default_options if k in known}
        out.update((k, v) for k, v in self.engine_options if k in known)
        return out


NO_FEATURES = Features()


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
    features: Features = NO_FEATURES
    # The model's catalogue capabilities ("thinking", "think_levels", "tools", "vision"): how
    # an engine is told what the request asks (e.g. Ollama think as a level or a bool).
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallFragment:
    """A piece of a tool call: the first of a call has ``id`` and ``name``."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ChatChunk:
    """What an engine sent in one network read: text (``tokens`` engine events joined, so a
    relay that fell behind catches up in one message), reasoning and tool-call fragments, and,
    at the end, the finish details and usage."""

    text: str = ""
    tokens: int = 0
    done: bool = False
    finish_reason: FinishReason = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str = ""
    reasoning_tokens: int = 0  # reasoning events in this chunk
    tool_calls: list[ToolCallFragment] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    raw_finish_reason: str = ""
    stop_sequence: str = ""
    # The engine's own count of reasoning tokens in the whole answer (final chunk only).
    usage_reasoning_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class EmbedCall:
    model: str
    inputs: tuple[str, ...]
    request_id: str
    route: Route | None = field(default=None, compare=False)  # as ChatCall.route
    dimensions: int | None = None
    truncate: bool = True


@dataclass(slots=True)
class EmbedOutput:
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
