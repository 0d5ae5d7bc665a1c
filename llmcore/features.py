"""Request features both services understand: reasoning control, response format, engine
options (the allowlist), and their parsing from the proto messages.

The router validates a request's own values with these; the control service validates a task's
defaults with the same functions before it pushes them, so a default the router would refuse is
never accepted. Problems are ``(field path, description)`` pairs; each service wraps them in its
own violation type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from clients.gen.llmgateway.v1 import common_pb2
from llmcore.vocabulary import ProviderName

ReasoningLevel = Literal["off", "on", "low", "medium", "high", "max"]
ResponseKind = Literal["text", "json_object", "json_schema"]
EngineOption = int | float | str | bool
Problem = tuple[str, str]

_LEVELS: dict[int, ReasoningLevel] = {
    common_pb2.REASONING_LEVEL_OFF: "off",
    common_pb2.REASONING_LEVEL_ON: "on",
    common_pb2.REASONING_LEVEL_LOW: "low",
    common_pb2.REASONING_LEVEL_MEDIUM: "medium",
    common_pb2.REASONING_LEVEL_HIGH: "high",
    common_pb2.REASONING_LEVEL_MAX: "max",
}
LEVEL_TO_PROTO: dict[ReasoningLevel, int] = {v: k for k, v in _LEVELS.items()}
_KINDS: dict[int, ResponseKind] = {
    common_pb2.RESPONSE_FORMAT_TYPE_TEXT: "text",
    common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT: "json_object",
    common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: "json_schema",
}
KIND_TO_PROTO: dict[ResponseKind, int] = {v: k for k, v in _KINDS.items()}
MAX_REASONING_BUDGET = 131_072
MAX_SCHEMA_CHARS = 65_536
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# The engine options that pass, by engine, with their value type. Everything else is refused:
# an option the router does not know could change what the engine does in ways the migration
# cannot compare (docs/agentic.md has the table).
OLLAMA_OPTIONS: dict[str, type] = {
    "num_ctx": int,  # the context window; Ollama silently drops the head of longer prompts
    "num_predict": int,
    "keep_alive": str,  # a duration ("30m", "-1") sent top-level, not in options
    "top_k": int,
    "min_p": float,
    "repeat_penalty": float,
    "repeat_last_n": int,
    "num_keep": int,
}
VLLM_OPTIONS: dict[str, type] = {
    "top_k": int,
    "min_p": float,
    "repetition_penalty": float,
    "presence_penalty": float,
    "frequency_penalty": float,
    "min_tokens": int,
}
ENGINE_OPTIONS: dict[ProviderName, dict[str, type]] = {
    "ollama": OLLAMA_OPTIONS,
    "vllm": VLLM_OPTIONS,
}
_INT_RANGE = (-(2**31), 2**31 - 1)
_KEEP_ALIVE = re.compile(r"^-?\d+(\.\d+)?(ms|s|m|h)?$")


@dataclass(frozen=True, slots=True)
class Reasoning:
    level: ReasoningLevel | None = None
    budget_tokens: int | None = None

    @property
    def on(self) -> bool:
        """Thinking was asked for (any level but off)."""
        return self.level is not None and self.level != "off"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: ResponseKind = "text"
    name: str = ""
    schema: str = ""  # canonical JSON text of the schema (json_schema only)
    strict: bool = False
    given: bool = False  # False: the request left it unspecified (a task default may apply)


def parse_reasoning(msg: common_pb2.ReasoningOptions, path: str, out: list[Problem]) -> Reasoning:
    level: ReasoningLevel | None = None
    if msg.level != common_pb2.REASONING_LEVEL_UNSPECIFIED:
        found = _LEVELS.get(msg.level)
        if found is None:
            out.append((f"{path}.level", f"unknown reasoning level {msg.level}"))
        level = found
    budget = msg.budget_tokens if msg.HasField("budget_tokens") else None
    if budget is not None:
        if not 0 < budget <= MAX_REASONING_BUDGET:
            out.append((f"{path}.budget_tokens", f"must be between 1 and {MAX_REASONING_BUDGET}"))
        elif level == "off":
            out.append((f"{path}.budget_tokens", "a budget needs reasoning on"))
    return Reasoning(level, budget)


def parse_response_format(
    msg: common_pb2.ResponseFormat, path: str, out: list[Problem]
) -> ResponseFormat:
    if msg.type == common_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED:
        if msg.json_schema or msg.name:
            out.append((f"{path}.type", "set a type with name or json_schema"))
        return ResponseFormat()
    kind = _KINDS.get(msg.type)
    if kind is None:
        out.append((f"{path}.type", f"unknown response format type {msg.type}"))
        return ResponseFormat()
    if kind != "json_schema":
        if msg.json_schema:
            out.append((f"{path}.json_schema", "only with RESPONSE_FORMAT_TYPE_JSON_SCHEMA"))
        return ResponseFormat(kind, given=True)
    if not _SCHEMA_NAME.match(msg.name):
        out.append((f"{path}.name", "required: 1-64 letters, digits, '_' or '-'"))
    schema = canonical_json_object(msg.json_schema, f"{path}.json_schema", out, MAX_SCHEMA_CHARS)
    return ResponseFormat(kind, msg.name, schema, msg.strict, given=True)


def canonical_json_object(text: str, path: str, out: list[Problem], limit: int) -> str:
    """``text`` as canonical JSON (sorted keys, no spaces) when it is a JSON object."""
    if not text.strip():
        out.append((path, "required: a JSON object"))
        return ""
    if len(text) > limit:
        out.append((path, f"at most {limit} characters"))
        return ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        out.append((path, f"not valid JSON: {exc}"))
        return ""
    if not isinstance(value, dict):
        out.append((path, "must be a JSON object"))
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parse_engine_options(
    raw: Mapping[str, str], path: str, out: list[Problem]
) -> tuple[tuple[str, EngineOption], ...]:
    """The options map typed by the allowlist, sorted by key. A key no engine allows is a
    problem; which engine gets which key is decided per engine later."""
    items = sorted(raw.items())
    typed: list[tuple[str, EngineOption]] = []
    for key, text in items:
        where = f'{path}["{key}"]'
        kinds = {t for opts in ENGINE_OPTIONS.values() for k, t in opts.items() if k == key}
        if not kinds:
            allowed = sorted({k for opts in ENGINE_OPTIONS.values() for k in opts})
            out.append((where, f"not an allowed engine option (allowed: {', '.join(allowed)})"))
            continue
        value = _typed(key, next(iter(kinds)), str(text), where, out)
        if value is not None:
            typed.append((key, value))
    return tuple(typed)


def _typed(key: str, kind: type, text: str, where: str, out: list[Problem]) -> EngineOption | None:
    text = text.strip()
    if kind is int:
        try:
            value = int(text)
        except ValueError:
            out.append((where, f"must be an integer, got {text!r}"))
            return None
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1] or (key != "keep_alive" and value < 0):
            out.append((where, "must be a non-negative 32-bit integer"))
            return None
        if key == "num_ctx" and value < 16:
            out.append((where, "must be at least 16"))
            return None
        return value
    if kind is float:
        try:
            f = float(text)
        except ValueError:
            out.append((where, f"must be a number, got {text!r}"))
            return None
        if f != f or f in (float("inf"), float("-inf")) or not -10.0 <= f <= 10.0:
            out.append((where, "must be a finite number in [-10, 10]"))
            return None
        return round(f, 6)
    if key == "keep_alive" and not _KEEP_ALIVE.match(text):
        out.append((where, f"must be a duration such as 30m, 10s or -1, got {text!r}"))
        return None
    return text


def engine_knows(provider: ProviderName, key: str) -> bool:
    return key in ENGINE_OPTIONS[provider]


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """A task's request defaults (``Flags.task_defaults``)."""

    reasoning: Reasoning = Reasoning()
    response_format: ResponseFormat = ResponseFormat()
    engine_options: tuple[tuple[str, EngineOption], ...] = ()


def parse_task_defaults(msg: Any, path: str, out: list[Problem]) -> TaskDefaults:
    """One ``TaskDefaults`` proto (control.proto) → values; its task is the caller's concern."""
    return TaskDefaults(
        parse_reasoning(msg.reasoning, f"{path}.reasoning", out),
        parse_response_format(msg.response_format, f"{path}.response_format", out),
        parse_engine_options(msg.engine_options, f"{path}.engine_options", out),
    )
