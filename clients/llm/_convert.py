"""Conversions between keyword arguments / result dataclasses and the proto messages."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm._enums import (
    ErrorCode,
    FinishReason,
    Provider,
    ProviderLike,
    Role,
    Task,
    TaskLike,
    from_proto,
    parse_enum,
)
from clients.llm._types import (
    Continuation,
    EmbedResult,
    GenerateEvent,
    Message,
    StreamEnd,
    StreamStart,
    TextChunk,
    Timings,
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
    if isinstance(message, Message):
        role, content = message.role, message.content
    else:
        role, content = message.get("role", Role.USER), message.get("content", "")
    return router_pb2.Message(
        role=router_pb2.Role.Value("ROLE_" + parse_enum(Role, role).name), content=content
    )


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
    return router_pb2.GenerateRequest(
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


def build_embed_request(
    *,
    request_id: str,
    inputs: str | Sequence[str],
    model: str | None,
    provider: ProviderLike | None,
    routing_key: str | None,
) -> router_pb2.EmbedRequest:
    """The ``EmbedRequest`` for an ``embed`` call; a single string is one input."""
    return router_pb2.EmbedRequest(
        request_id=request_id,
        routing_key=routing_key or "",
        inputs=[inputs] if isinstance(inputs, str) else list(inputs),
        model=model or "",
        provider=provider_to_proto(provider),
    )


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
        return TextChunk(text=response.delta.text)
    if kind == "end":
        end = response.end
        return StreamEnd(
            finish_reason=from_proto(FinishReason, end.finish_reason),
            usage=Usage(
                prompt_tokens=end.usage.prompt_tokens,
                completion_tokens=end.usage.completion_tokens,
                total_tokens=end.usage.total_tokens,
            ),
            timings=Timings(
                time_to_first_token_ms=end.timings.time_to_first_token_ms,
                total_ms=end.timings.total_ms,
                tokens_per_second=end.timings.tokens_per_second,
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
