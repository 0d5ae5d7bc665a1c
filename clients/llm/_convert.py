"""Conversions between keyword arguments / result dataclasses and the proto messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm._enums import (
    ErrorCode,
    FinishReason,
    Provider,
    ProviderLike,
    ReasoningLevel,
    Role,
    Task,
    TaskLike,
    from_proto,
    parse_enum,
)
from clients.llm._features import (
    ResponseFormat,
    Tool,
    ToolChoiceLike,
    engine_options_to_proto,
    reasoning_to_proto,
    response_format_to_proto,
    tool_choice_to_proto,
    tools_to_proto,
)
from clients.llm._types import (
    Continuation,
    EmbedResult,
    GenerateEvent,
    Message,
    ReasoningChunk,
    StreamEnd,
    StreamStart,
    TextChunk,
    Timings,
    TokenLogprob,
    ToolCallChunk,
    TopLogprob,
    Usage,
)

MessageLike = Message | Mapping[str, str]
"""A chat turn as a :class:`Message` or an OpenAI-style ``{"role": ..., "content": ...}``."""


def new_request_id() -> str:
    """A fresh request id (uuid4 hex), used when the caller gives none."""
    return uuid.uuid4().hex


def task_to_proto(task: TaskLike | None) -> common_pb2.Task.ValueType:
    """The proto value of a task; None is TASK_UNSPECIFIED."""
    if task is None:
        return common_pb2.TASK_UNSPECIFIED
    return common_pb2.Task.Value("TASK_" + parse_enum(Task, task).name)


def provider_to_proto(provider: ProviderLike | None) -> common_pb2.Provider.ValueType:
    """The proto value of a provider; None is PROVIDER_UNSPECIFIED."""
    if provider is None:
        return common_pb2.PROVIDER_UNSPECIFIED
    return common_pb2.Provider.Value("PROVIDER_" + parse_enum(Provider, provider).name)


def message_to_proto(message: MessageLike) -> router_pb2.Message:
    """A chat turn as a proto ``Message``."""
    if not isinstance(message, Message):
        message = Message(message.get("role", Role.USER), message.get("content", ""))
    return router_pb2.Message(
        role=router_pb2.Role.Value("ROLE_" + parse_enum(Role, message.role).name),
        content=message.content,
        images=[router_pb2.Image(data=i.data, mime_type=i.mime_type) for i in message.images],
        tool_calls=[
            router_pb2.ToolCall(id=c.id, name=c.name, arguments_json=c.arguments)
            for c in message.tool_calls
        ],
        tool_call_id=message.tool_call_id,
        tool_name=message.tool_name,
        reasoning=message.reasoning,
    )


@dataclass(frozen=True, slots=True)
class Features:
    """The agentic arguments of a ``generate`` call, as both clients take them."""

    reasoning: ReasoningLevel | str | None = None
    reasoning_budget: int | None = None
    response_format: ResponseFormat | None = None
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoiceLike | None = None
    engine_options: Mapping[str, object] | None = None
    logprobs: bool = False
    top_logprobs: int = 0

    def apply(self, request: router_pb2.GenerateRequest) -> None:
        request.reasoning.CopyFrom(reasoning_to_proto(self.reasoning, self.reasoning_budget))
        request.response_format.CopyFrom(response_format_to_proto(self.response_format))
        request.tools.extend(tools_to_proto(self.tools))
        request.tool_choice.CopyFrom(tool_choice_to_proto(self.tool_choice))
        request.engine_options.update(engine_options_to_proto(self.engine_options))
        request.options.logprobs = self.logprobs
        request.options.top_logprobs = self.top_logprobs


def build_generate_request(
    *,
    request_id: str,
    prompt: str | None,
    messages: Iterable[MessageLike] | None,
    system: str | None,
    task: TaskLike | None,
    model: str | None,
    provider: ProviderLike | None,
    routing_key: str | None,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
    features: Features | None = None,
) -> router_pb2.GenerateRequest:
    """The ``GenerateRequest`` for a ``generate`` call; unset sampling options stay unset."""
    options = router_pb2.GenerationOptions(stop=list(stop))
    if max_tokens is not None:
        options.max_tokens = max_tokens
    if temperature is not None:
        options.temperature = temperature
    if top_p is not None:
        options.top_p = top_p
    if seed is not None:
        options.seed = seed
    request = router_pb2.GenerateRequest(
        request_id=request_id,
        routing_key=routing_key or "",
        task=task_to_proto(task),
        messages=[message_to_proto(m) for m in messages or ()],
        prompt=prompt or "",
        system=system or "",
        model=model or "",
        provider=provider_to_proto(provider),
        options=options,
    )
    if features is not None:
        features.apply(request)
    return request


def build_embed_request(
    *,
    request_id: str,
    inputs: str | Sequence[str],
    model: str | None,
    provider: ProviderLike | None,
    routing_key: str | None,
    dimensions: int | None = None,
    truncate: bool | None = None,
) -> router_pb2.EmbedRequest:
    """The ``EmbedRequest`` for an ``embed`` call; a single string is one input."""
    request = router_pb2.EmbedRequest(
        request_id=request_id,
        routing_key=routing_key or "",
        inputs=[inputs] if isinstance(inputs, str) else list(inputs),
        model=model or "",
        provider=provider_to_proto(provider),
    )
    if dimensions is not None:
        request.dimensions = dimensions
    if truncate is not None:
        request.truncate = truncate
    return request


def event_from_proto(response: router_pb2.GenerateResponse) -> GenerateEvent | None:
    """The event in one stream message; None for an empty message (a newer router's event)."""
    kind = response.WhichOneof("event")
    if kind == "start":
        start = response.start
        return StreamStart(
            request_id=start.request_id,
            provider=from_proto(Provider, start.provider),
            model=start.model,
            engine_model=start.engine_model,
            fallback=start.fallback,
            attempt=start.attempt,
        )
    if kind == "delta":
        return TextChunk(
            text=response.delta.text,
            logprobs=tuple(
                TokenLogprob(
                    lp.token,
                    lp.logprob,
                    tuple(TopLogprob(t.token, t.logprob) for t in lp.top),
                )
                for lp in response.delta.logprobs
            ),
        )
    if kind == "reasoning":
        return ReasoningChunk(text=response.reasoning.text)
    if kind == "tool_call":
        tc = response.tool_call
        return ToolCallChunk(tc.index, tc.id, tc.name, tc.arguments_fragment)
    if kind == "end":
        end = response.end
        return StreamEnd(
            finish_reason=from_proto(FinishReason, end.finish_reason),
            usage=Usage(
                prompt_tokens=end.usage.prompt_tokens,
                completion_tokens=end.usage.completion_tokens,
                total_tokens=end.usage.total_tokens,
                reasoning_tokens=end.usage.reasoning_tokens,
            ),
            timings=Timings(
                time_to_first_token_ms=end.timings.time_to_first_token_ms,
                total_ms=end.timings.total_ms,
                tokens_per_second=end.timings.tokens_per_second,
                time_to_first_reasoning_ms=end.timings.time_to_first_reasoning_ms,
                time_to_first_answer_ms=end.timings.time_to_first_answer_ms,
            ),
            continuations=tuple(
                Continuation(
                    from_provider=from_proto(Provider, c.from_provider),
                    reason=ErrorCode(c.reason) if c.reason in _CODES else None,
                    provider=from_proto(Provider, c.provider),
                    model=c.model,
                    engine_model=c.engine_model,
                    offset_chars=c.offset_chars,
                )
                for c in end.continuations
            ),
            raw_finish_reason=end.raw_finish_reason,
            stop_sequence=end.stop_sequence,
        )
    return None


_CODES = frozenset(c.value for c in ErrorCode)


def embed_result_from_proto(response: router_pb2.EmbedResponse) -> EmbedResult:
    """An ``EmbedResponse`` as an :class:`EmbedResult`."""
    return EmbedResult(
        request_id=response.request_id,
        provider=from_proto(Provider, response.provider),
        model=response.model,
        embeddings=[list(e.values) for e in response.embeddings],
        prompt_tokens=response.prompt_tokens,
        fallback=response.fallback,
        total_ms=response.total_ms,
    )
