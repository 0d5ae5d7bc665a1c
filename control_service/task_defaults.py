"""Per-task request defaults (``Flags.task_defaults``): their state form, the wire form, and
validation with the router's own parser (``llmcore.features``), so a default the router would
refuse is never accepted, let alone pushed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clients.gen.llmgateway.v1 import control_pb2
from control_service.errors import FieldViolation
from llmcore.features import KIND_TO_PROTO, LEVEL_TO_PROTO, parse_task_defaults
from llmcore.vocabulary import TASK_FROM_PROTO, TASK_TO_PROTO, TaskName

_LEVEL_FROM = {v: k for k, v in LEVEL_TO_PROTO.items()}
_KIND_FROM = {v: k for k, v in KIND_TO_PROTO.items()}


@dataclass(frozen=True, slots=True)
class TaskDefaultsEntry:
    """One task's defaults; "" means unspecified (the request, or the engine, decides)."""

    task: TaskName
    reasoning_level: str = ""  # off, on, low, medium, high, max
    reasoning_budget_tokens: int | None = None
    response_format: str = ""  # text, json_object, json_schema
    schema_name: str = ""
    json_schema: str = ""
    strict: bool = False
    engine_options: tuple[tuple[str, str], ...] = ()


def to_proto(e: TaskDefaultsEntry) -> control_pb2.TaskDefaults:
    msg = control_pb2.TaskDefaults(
        task=TASK_TO_PROTO[e.task],  # type: ignore[arg-type]
        engine_options=dict(e.engine_options),
    )
    if e.reasoning_level:
        msg.reasoning.level = LEVEL_TO_PROTO[e.reasoning_level]  # type: ignore[index,assignment]
    if e.reasoning_budget_tokens is not None:
        msg.reasoning.budget_tokens = e.reasoning_budget_tokens
    if e.response_format:
        msg.response_format.type = KIND_TO_PROTO[e.response_format]  # type: ignore[index,assignment]
        msg.response_format.name = e.schema_name
        msg.response_format.json_schema = e.json_schema
        msg.response_format.strict = e.strict
    return msg


def from_proto(
    msgs: Sequence[control_pb2.TaskDefaults], bad: list[FieldViolation]
) -> tuple[TaskDefaultsEntry, ...]:
    out: list[TaskDefaultsEntry] = []
    for i, m in enumerate(msgs):
        path = f"flags.task_defaults[{i}]"
        task = TASK_FROM_PROTO.get(m.task)
        if task is None:
            bad.append(FieldViolation(f"{path}.task", f"unknown task {m.task}"))
            continue
        r, f = m.reasoning, m.response_format
        out.append(
            TaskDefaultsEntry(
                task=task,
                reasoning_level=_LEVEL_FROM.get(r.level, ""),
                reasoning_budget_tokens=r.budget_tokens if r.HasField("budget_tokens") else None,
                response_format=_KIND_FROM.get(f.type, ""),
                schema_name=f.name,
                json_schema=f.json_schema,
                strict=f.strict,
                engine_options=tuple(sorted(m.engine_options.items())),
            )
        )
    return tuple(out)


def validate(entries: Sequence[TaskDefaultsEntry]) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    seen: set[TaskName] = set()
    for i, e in enumerate(entries):
        path = f"flags.task_defaults[{i}]"
        if e.task == "embedding":
            out.append(FieldViolation(f"{path}.task", "TASK_EMBEDDING has no generate defaults"))
        elif e.task in seen:
            out.append(FieldViolation(f"{path}.task", f"{e.task} has defaults already"))
        seen.add(e.task)
        problems: list[tuple[str, str]] = []
        parse_task_defaults(to_proto(e), path, problems)
        out.extend(FieldViolation(f, d) for f, d in problems)
    return out
