"""Comparing a primary and its shadow by what the request asked for. Plain functions, no I/O.

* ``text``: the answers are compared without their reasoning (reasoning goes elsewhere: its
  length ratio), so a thinking engine and one that thinks less still compare on the answer.
* ``json`` (a response format was asked): does each side's answer parse, and is it valid for the
  request's JSON Schema (a JSON-object format: is it an object). Measured per engine, since
  engines have been seen not to enforce a schema.
* ``tool_calls`` (tools were offered): do both call the same functions with the same arguments,
  after canonical JSON (sorted keys, no spaces), in any order. A shadow never executes a tool;
  the router never does.
* both sides: a LENGTH finish (the token limit, which a long thinking phase can eat).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema

from router_service.request_stats import KindFigures
from router_service.values import Features, ToolCallFragment


@dataclass(frozen=True, slots=True)
class SideOutput:
    """What one side produced, beyond its timing."""

    text: str = ""
    reasoning: str = ""
    calls: tuple[ToolCallFragment, ...] = ()
    finish_length: bool = False


def output_kind(features: Features) -> str:
    if features.tools:
        return "tool_calls"
    if features.response_format.kind != "text":
        return "json"
    return "text"


def _parse(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def schema_valid(text: str, features: Features) -> tuple[bool, bool]:
    """(parses as JSON, valid for the request's format)."""
    ok, value = _parse(text)
    if not ok:
        return False, False
    fmt = features.response_format
    if fmt.kind == "json_schema":
        try:
            jsonschema.validate(value, json.loads(fmt.schema))
        except jsonschema.ValidationError:
            return True, False
        except jsonschema.SchemaError:
            return True, False
        return True, True
    return True, isinstance(value, dict)


def assembled(fragments: Iterable[ToolCallFragment]) -> list[tuple[str, str]]:
    """Whole calls as (name, canonical arguments JSON), sorted; arguments that do not parse are
    kept as their text (they then only agree with the same text)."""
    calls: dict[int, list[str]] = {}
    for f in fragments:
        entry = calls.setdefault(f.index, ["", ""])
        entry[0] = entry[0] or f.name
        entry[1] += f.arguments
    out: list[tuple[str, str]] = []
    for name, args in calls.values():
        ok, value = _parse(args or "{}")
        out.append((name, json.dumps(value, sort_keys=True, separators=(",", ":")) if ok else args))
    return sorted(out)


def compare_kinds(
    features: Features, primary: SideOutput, shadow: SideOutput, both_ok: bool
) -> KindFigures:
    """The per-kind figures; content figures only when both sides succeeded."""
    kind = output_kind(features)
    if not both_ok:
        return KindFigures(
            output_kind=kind,
            primary_finish_length=primary.finish_length,
            shadow_finish_length=shadow.finish_length,
        )
    p_json = p_schema = s_json = s_schema = False
    if kind == "json":
        p_json, p_schema = schema_valid(primary.text, features)
        s_json, s_schema = schema_valid(shadow.text, features)
    agree: bool | None = None
    if primary.calls or shadow.calls:
        agree = assembled(primary.calls) == assembled(shadow.calls)
    ratio: float | None = None
    if primary.reasoning:
        ratio = len(shadow.reasoning) / len(primary.reasoning)
    return KindFigures(
        output_kind=kind,
        primary_json_valid=p_json,
        shadow_json_valid=s_json,
        primary_schema_valid=p_schema,
        shadow_schema_valid=s_schema,
        tool_calls_agree=agree,
        reasoning_length_ratio=ratio,
        primary_finish_length=primary.finish_length,
        shadow_finish_length=shadow.finish_length,
    )
