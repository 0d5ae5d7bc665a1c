"""Typed request features: reasoning, response format, tools, images; and their protos."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm._enums import ReasoningLevel, ToolChoiceMode, parse_enum


@dataclass(frozen=True, slots=True)
class Image:
    """An image attached to a user message (vision models only): the file's bytes."""

    data: bytes
    mime_type: str = ""
    """Detected by the router when empty."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call: by the model (``GenerateResult.tool_calls``) or in the history."""

    id: str
    name: str
    arguments: str
    """The arguments object as JSON text."""

    @property
    def args(self) -> Any:
        """The arguments, parsed."""
        return json.loads(self.arguments or "{}")


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON Schema (a dict or JSON text)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | str = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class ForceTool:
    """``tool_choice`` forcing a call of one named tool."""

    name: str


ToolChoiceLike: TypeAlias = ToolChoiceMode | str | ForceTool
"""``"auto"``, ``"none"``, ``"required"`` (or a :class:`ToolChoiceMode`), or :class:`ForceTool`."""


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The shape of the answer: use :meth:`text`, :meth:`json_object` or :meth:`schema`."""

    type: str = "text"
    name: str = ""
    json_schema: Mapping[str, Any] | None = None
    strict: bool = False

    @classmethod
    def text(cls) -> ResponseFormat:
        """Free text (overrides a task's default)."""
        return cls("text")

    @classmethod
    def json_object(cls) -> ResponseFormat:
        """Any JSON object."""
        return cls("json_object")

    @classmethod
    def schema(
        cls, name: str, schema: Mapping[str, Any], *, strict: bool = False
    ) -> ResponseFormat:
        """JSON valid for ``schema``."""
        return cls("json_schema", name, schema, strict)


_FORMAT = {
    "text": common_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}


def response_format_to_proto(fmt: ResponseFormat | None) -> common_pb2.ResponseFormat:
    if fmt is None:
        return common_pb2.ResponseFormat()
    if fmt.type not in _FORMAT:
        raise ValueError(
            f"invalid response format {fmt.type!r}; expected one of: {', '.join(_FORMAT)}"
        )
    return common_pb2.ResponseFormat(
        type=_FORMAT[fmt.type],
        name=fmt.name,
        json_schema=json.dumps(fmt.json_schema) if fmt.json_schema is not None else "",
        strict=fmt.strict,
    )


def reasoning_to_proto(
    level: ReasoningLevel | str | None, budget_tokens: int | None
) -> common_pb2.ReasoningOptions:
    out = common_pb2.ReasoningOptions()
    if level is not None:
        out.level = common_pb2.ReasoningLevel.Value(
            "REASONING_LEVEL_" + parse_enum(ReasoningLevel, level).name
        )
    if budget_tokens is not None:
        out.budget_tokens = budget_tokens
    return out


def tools_to_proto(tools: Sequence[Tool]) -> list[router_pb2.Tool]:
    return [
        router_pb2.Tool(
            name=t.name,
            description=t.description,
            parameters_json=t.parameters
            if isinstance(t.parameters, str)
            else json.dumps(t.parameters),
        )
        for t in tools
    ]


def tool_choice_to_proto(choice: ToolChoiceLike | None) -> router_pb2.ToolChoice:
    if choice is None:
        return router_pb2.ToolChoice()
    if isinstance(choice, ForceTool):
        return router_pb2.ToolChoice(
            mode=router_pb2.TOOL_CHOICE_MODE_FUNCTION, function_name=choice.name
        )
    mode = parse_enum(ToolChoiceMode, choice)
    return router_pb2.ToolChoice(
        mode=router_pb2.ToolChoiceMode.Value("TOOL_CHOICE_MODE_" + mode.name)
    )


def engine_options_to_proto(options: Mapping[str, object] | None) -> dict[str, str]:
    """Values as text (the router types them by its allowlist); booleans as true/false."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out
