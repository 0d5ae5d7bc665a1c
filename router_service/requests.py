"""Proto requests → validated domain values. Every problem is reported, each naming its field.

Imports the generated messages (protobuf) but not grpc.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from llmcore.vocabulary import ProviderName, TaskName
from router_service.dispatch import ChatIntent, Continued
from router_service.errors import FieldViolation, invalid
from router_service.limits import (
    MAX_STOP_SEQUENCES,
    embed_size_violations,
    generate_size_violations,
)
from router_service.request_features import check_logprobs, parse_features, parse_messages
from router_service.values import ChatMessage, Route, SamplingOptions

_TASKS: dict[int, TaskName] = {
    common_pb2.TASK_UNSPECIFIED: "analysis",
    common_pb2.TASK_CLASSIFICATION: "classification",
    common_pb2.TASK_ANALYSIS: "analysis",
    common_pb2.TASK_SYNTHESIS: "synthesis",
    common_pb2.TASK_REFLECTION: "reflection",
    common_pb2.TASK_RETRIEVAL_EVALUATION: "retrieval_evaluation",
    common_pb2.TASK_VERIFICATION: "verification",
    common_pb2.TASK_EMBEDDING: "embedding",
}
_PROVIDERS: dict[int, ProviderName | None] = {
    common_pb2.PROVIDER_UNSPECIFIED: None,
    common_pb2.PROVIDER_OLLAMA: "ollama",
    common_pb2.PROVIDER_VLLM: "vllm",
}
PROVIDER_TO_PROTO: dict[str, common_pb2.Provider.ValueType] = {
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}
MAX_REQUEST_ID_LEN = 128
MAX_EMBED_DIMENSIONS = 65_536


@dataclass(frozen=True, slots=True)
class Limits:
    max_prompt_chars: int
    max_output_tokens: int
    max_embed_inputs: int


@dataclass(frozen=True, slots=True)
class GenerateInput:
    intent: ChatIntent
    routing_key: str
    task: TaskName
    model: str
    provider: ProviderName | None


@dataclass(frozen=True, slots=True)
class EmbedInput:
    request_id: str
    routing_key: str
    inputs: tuple[str, ...]
    model: str
    provider: ProviderName | None
    dimensions: int | None = None
    truncate: bool = True


def resolve_request_id(field_value: str, metadata_value: str | None) -> str:
    """The request's own id, else the ``x-request-id`` metadata, else a new one."""
    rid = field_value or metadata_value or ""
    if rid and len(rid) <= MAX_REQUEST_ID_LEN and _printable_ascii(rid):
        return rid
    return uuid.uuid4().hex


def _check_request_id(value: str, out: list[FieldViolation]) -> None:
    if len(value) > MAX_REQUEST_ID_LEN:
        out.append(FieldViolation("request_id", f"at most {MAX_REQUEST_ID_LEN} characters"))
    elif value and not _printable_ascii(value):
        # It goes back in the x-request-id metadata, which must be ASCII (grpc: INTERNAL).
        out.append(FieldViolation("request_id", "must be printable ASCII"))


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _provider(value: int, out: list[FieldViolation]) -> ProviderName | None:
    if value not in _PROVIDERS:
        out.append(FieldViolation("provider", f"unknown provider {value}"))
        return None
    return _PROVIDERS[value]


def generate_input(req: router_pb2.GenerateRequest, request_id: str, lim: Limits) -> GenerateInput:
    """Validate a GenerateRequest; raises ``RouterError(INVALID_REQUEST)`` listing every field."""
    bad: list[FieldViolation] = generate_size_violations(req)
    if bad:  # sizes first: no per-message work on an oversized request
        raise invalid(bad)
    _check_request_id(req.request_id, bad)
    task = _TASKS.get(req.task)
    if task is None:
        bad.append(FieldViolation("task", f"unknown task {req.task}"))
    elif task == "embedding":
        bad.append(FieldViolation("task", "TASK_EMBEDDING is for Embed, not Generate"))
    provider = _provider(req.provider, bad)

    messages: list[ChatMessage] = []
    if req.system:
        messages.append(ChatMessage("system", req.system))
    if req.messages:
        if req.prompt:
            bad.append(FieldViolation("prompt", "give either messages or prompt, not both"))
        messages.extend(parse_messages(req.messages, bad))
    elif req.prompt.strip():
        messages.append(ChatMessage("user", req.prompt))
    else:
        bad.append(FieldViolation("messages", "either messages or prompt is required"))
    size = sum(len(m.content) for m in messages)
    if size > lim.max_prompt_chars:
        bad.append(
            FieldViolation(
                "messages" if req.messages else "prompt",
                f"prompt is {size} characters; the limit is {lim.max_prompt_chars}",
            )
        )

    options = _options(req.options, lim, bad)
    features = parse_features(req, bad)
    if bad:
        raise invalid(bad)
    assert task is not None
    return GenerateInput(
        # Issue 17: the caller's own routing key (not the request-id default) is the episode
        # affinity inside an engine pool.
        intent=ChatIntent(
            request_id, tuple(messages), options, features, route=Route(req.routing_key)
        ),
        routing_key=req.routing_key or request_id,
        task=task,
        model=req.model.strip(),
        provider=provider,
    )


def _options(
    o: router_pb2.GenerationOptions, lim: Limits, bad: list[FieldViolation]
) -> SamplingOptions:
    max_tokens = o.max_tokens if o.HasField("max_tokens") else None
    if max_tokens is not None and not 0 < max_tokens <= lim.max_output_tokens:
        bad.append(
            FieldViolation("options.max_tokens", f"must be between 1 and {lim.max_output_tokens}")
        )
    temperature = o.temperature if o.HasField("temperature") else None
    if temperature is not None and not (math.isfinite(temperature) and 0 <= temperature <= 2):
        bad.append(FieldViolation("options.temperature", "must be between 0 and 2"))
    top_p = o.top_p if o.HasField("top_p") else None
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        bad.append(FieldViolation("options.top_p", "must be in (0, 1]"))
    if len(o.stop) > MAX_STOP_SEQUENCES:
        bad.append(FieldViolation("options.stop", f"at most {MAX_STOP_SEQUENCES} sequences"))
    for i, s in enumerate(o.stop):
        if not s:
            bad.append(FieldViolation(f"options.stop[{i}]", "must not be empty"))
    seed = o.seed if o.HasField("seed") else None
    check_logprobs(o, bad)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=None if temperature is None else round(temperature, 6),
        top_p=None if top_p is None else round(top_p, 6),
        stop=tuple(o.stop),
        seed=seed,
        logprobs=o.logprobs,
        top_logprobs=o.top_logprobs,
    )


def embed_input(req: router_pb2.EmbedRequest, request_id: str, lim: Limits) -> EmbedInput:
    bad: list[FieldViolation] = embed_size_violations(req, lim.max_embed_inputs)
    if bad:  # sizes first: no per-input work on an oversized request
        raise invalid(bad)
    _check_request_id(req.request_id, bad)
    provider = _provider(req.provider, bad)
    if not req.inputs:
        bad.append(FieldViolation("inputs", "at least one input is required"))
    elif len(req.inputs) > lim.max_embed_inputs:
        bad.append(
            FieldViolation(
                "inputs", f"{len(req.inputs)} inputs; the limit is {lim.max_embed_inputs}"
            )
        )
    for i, text in enumerate(req.inputs):
        if not text.strip():
            bad.append(FieldViolation(f"inputs[{i}]", "must not be empty"))
    size = sum(len(t) for t in req.inputs)
    if size > lim.max_prompt_chars:
        bad.append(
            FieldViolation(
                "inputs", f"inputs total {size} characters; the limit is {lim.max_prompt_chars}"
            )
        )
    dimensions = req.dimensions if req.HasField("dimensions") else None
    if dimensions is not None and not 0 < dimensions <= MAX_EMBED_DIMENSIONS:
        bad.append(FieldViolation("dimensions", f"must be between 1 and {MAX_EMBED_DIMENSIONS}"))
    if bad:
        raise invalid(bad)
    return EmbedInput(
        request_id=request_id,
        routing_key=req.routing_key or request_id,
        inputs=tuple(req.inputs),
        model=req.model.strip(),
        provider=provider,
        dimensions=dimensions,
        truncate=req.truncate if req.HasField("truncate") else True,
    )


def continuation_to_proto(ev: Continued) -> router_pb2.Continuation:
    """A continuation event as the GenerateEnd reports it."""
    return router_pb2.Continuation(
        from_provider=PROVIDER_TO_PROTO[ev.from_provider],
        reason=common_pb2.ErrorCode.Value(f"ERROR_CODE_{ev.reason.value}"),
        provider=PROVIDER_TO_PROTO[ev.provider],
        model=ev.model,
        engine_model=ev.engine_model,
        offset_chars=ev.offset_chars,
    )
