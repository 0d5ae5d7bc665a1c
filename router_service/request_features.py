"""The agentic parts of a GenerateRequest → validated values: messages with images, tool calls
and tool results, tools and tool choice, reasoning, response format, engine options.

Every problem is reported, each naming its proto field. Imports the generated messages but not
grpc.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from clients.gen.llmgateway.v1 import router_pb2
from llmcore.features import (
    Reasoning,
    TaskDefaults,
    canonical_json_object,
    parse_engine_options,
    parse_reasoning,
    parse_response_format,
)
from router_service.errors import FieldViolation
from router_service.values import (
    ChatMessage,
    Features,
    Image,
    Role,
    ToolCall,
    ToolChoice,
    ToolSpec,
)

MAX_TOOLS = 64
MAX_IMAGES = 8
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_TOOL_SCHEMA_CHARS = 32_768
MAX_TOP_LOGPROBS = 20
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLES: dict[int, Role] = {
    router_pb2.ROLE_UNSPECIFIED: "user",
    router_pb2.ROLE_SYSTEM: "system",
    router_pb2.ROLE_USER: "user",
    router_pb2.ROLE_ASSISTANT: "assistant",
    router_pb2.ROLE_TOOL: "tool",
}
_TOOL_CHOICE = {
    router_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: "auto",
    router_pb2.TOOL_CHOICE_MODE_AUTO: "auto",
    router_pb2.TOOL_CHOICE_MODE_NONE: "none",
    router_pb2.TOOL_CHOICE_MODE_REQUIRED: "required",
    router_pb2.TOOL_CHOICE_MODE_FUNCTION: "function",
}
# Magic numbers of the image formats the vision engines accept.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


def image_mime(data: bytes) -> str | None:
    """The image type by its magic number; None when it is no image format we accept."""
    for magic, mime in _MAGIC:
        if data.startswith(magic) and (mime != "image/webp" or data[8:12] == b"WEBP"):
            return mime
    return None


def parse_messages(
    msgs: Iterable[router_pb2.Message], bad: list[FieldViolation]
) -> list[ChatMessage]:
    """The history. Tool results must answer a call made earlier in it; a message needs text
    unless it is an assistant turn carrying tool calls."""
    out: list[ChatMessage] = []
    calls: dict[str, str] = {}  # id → tool name of every call made so far
    for i, m in enumerate(msgs):
        path = f"messages[{i}]"
        role = _ROLES.get(m.role)
        if role is None:
            bad.append(FieldViolation(f"{path}.role", f"unknown role {m.role}"))
            continue
        tool_calls = _history_calls(m, role, path, bad)
        calls.update((c.id, c.name) for c in tool_calls)
        if not m.content.strip() and not tool_calls:
            bad.append(FieldViolation(f"{path}.content", "must not be empty"))
        images = _images(m, role, path, bad)
        tool_name = m.tool_name
        if role == "tool":
            if not m.tool_call_id:
                bad.append(FieldViolation(f"{path}.tool_call_id", "required on a tool result"))
            elif m.tool_call_id not in calls:
                bad.append(
                    FieldViolation(
                        f"{path}.tool_call_id",
                        f"{m.tool_call_id!r} answers no earlier assistant tool call",
                    )
                )
            else:
                tool_name = tool_name or calls[m.tool_call_id]
        elif m.tool_call_id or m.tool_name:
            field = "tool_call_id" if m.tool_call_id else "tool_name"
            bad.append(FieldViolation(f"{path}.{field}", "only on a ROLE_TOOL message"))
        if m.reasoning and role != "assistant":
            bad.append(FieldViolation(f"{path}.reasoning", "only on an assistant message"))
        out.append(
            ChatMessage(
                role,
                m.content,
                images=images,
                tool_calls=tool_calls,
                tool_call_id=m.tool_call_id,
                tool_name=tool_name,
                reasoning=m.reasoning,
            )
        )
    return out


def _history_calls(
    m: router_pb2.Message, role: Role, path: str, bad: list[FieldViolation]
) -> tuple[ToolCall, ...]:
    if not m.tool_calls:
        return ()
    if role != "assistant":
        bad.append(FieldViolation(f"{path}.tool_calls", "only on an assistant message"))
        return ()
    out: list[ToolCall] = []
    problems: list[tuple[str, str]] = []
    for j, c in enumerate(m.tool_calls):
        where = f"{path}.tool_calls[{j}]"
        if not c.id:
            bad.append(FieldViolation(f"{where}.id", "required"))
        if not _TOOL_NAME.match(c.name):
            bad.append(FieldViolation(f"{where}.name", "1-64 letters, digits, '_' or '-'"))
        args = canonical_json_object(
            c.arguments_json or "{}", f"{where}.arguments_json", problems, MAX_TOOL_SCHEMA_CHARS
        )
        out.append(ToolCall(c.id, c.name, args))
    bad.extend(FieldViolation(f, d) for f, d in problems)
    return tuple(out)


def _images(
    m: router_pb2.Message, role: Role, path: str, bad: list[FieldViolation]
) -> tuple[Image, ...]:
    if not m.images:
        return ()
    if role != "user":
        bad.append(FieldViolation(f"{path}.images", "only on a user message"))
        return ()
    if len(m.images) > MAX_IMAGES:
        bad.append(FieldViolation(f"{path}.images", f"at most {MAX_IMAGES} images"))
        return ()
    out: list[Image] = []
    for j, img in enumerate(m.images):
        where = f"{path}.images[{j}]"
        if not img.data:
            bad.append(FieldViolation(f"{where}.data", "must not be empty"))
            continue
        if len(img.data) > MAX_IMAGE_BYTES:
            bad.append(FieldViolation(f"{where}.data", f"at most {MAX_IMAGE_BYTES} bytes"))
            continue
        detected = image_mime(img.data)
        if detected is None:
            bad.append(FieldViolation(f"{where}.data", "not a PNG, JPEG, GIF or WebP image"))
            continue
        if img.mime_type and img.mime_type != detected:
            bad.append(
                FieldViolation(f"{where}.mime_type", f"says {img.mime_type}, data is {detected}")
            )
        out.append(Image(img.data, detected))
    return tuple(out)


def parse_features(req: router_pb2.GenerateRequest, bad: list[FieldViolation]) -> Features:
    problems: list[tuple[str, str]] = []
    reasoning = parse_reasoning(req.reasoning, "reasoning", problems)
    fmt = parse_response_format(req.response_format, "response_format", problems)
    options = parse_engine_options(req.engine_options, "engine_options", problems)
    tools: list[ToolSpec] = []
    if len(req.tools) > MAX_TOOLS:
        bad.append(FieldViolation("tools", f"at most {MAX_TOOLS} tools"))
    seen: set[str] = set()
    for i, t in enumerate(req.tools[:MAX_TOOLS]):
        if not _TOOL_NAME.match(t.name):
            bad.append(FieldViolation(f"tools[{i}].name", "1-64 letters, digits, '_' or '-'"))
        elif t.name in seen:
            bad.append(FieldViolation(f"tools[{i}].name", f"duplicate tool {t.name!r}"))
        seen.add(t.name)
        params = canonical_json_object(
            t.parameters_json or '{"type":"object","properties":{}}',
            f"tools[{i}].parameters_json",
            problems,
            MAX_TOOL_SCHEMA_CHARS,
        )
        tools.append(ToolSpec(t.name, t.description, params))
    choice = _tool_choice(req, seen, bad)
    bad.extend(FieldViolation(f, d) for f, d in problems)
    return Features(
        reasoning=reasoning,
        response_format=fmt,
        tools=tuple(tools),
        tool_choice=choice,
        engine_options=options,
    )


def _tool_choice(
    req: router_pb2.GenerateRequest, names: set[str], bad: list[FieldViolation]
) -> ToolChoice:
    tc = req.tool_choice
    mode = _TOOL_CHOICE.get(tc.mode)
    if mode is None:
        bad.append(FieldViolation("tool_choice.mode", f"unknown tool choice mode {tc.mode}"))
        return ToolChoice()
    if mode != "auto" and not req.tools:
        bad.append(FieldViolation("tool_choice.mode", "needs tools"))
    if mode == "function":
        if not tc.function_name:
            bad.append(FieldViolation("tool_choice.function_name", "required with FUNCTION"))
        elif tc.function_name not in names:
            bad.append(
                FieldViolation(
                    "tool_choice.function_name", f"{tc.function_name!r} is not among tools"
                )
            )
    elif tc.function_name:
        bad.append(FieldViolation("tool_choice.function_name", "only with FUNCTION"))
    return ToolChoice(mode, tc.function_name)  # type: ignore[arg-type]


def check_logprobs(o: router_pb2.GenerationOptions, bad: list[FieldViolation]) -> None:
    if not 0 <= o.top_logprobs <= MAX_TOP_LOGPROBS:
        bad.append(FieldViolation("options.top_logprobs", f"must be 0-{MAX_TOP_LOGPROBS}"))
    elif o.top_logprobs and not o.logprobs:
        bad.append(FieldViolation("options.top_logprobs", "needs options.logprobs"))


def with_task_defaults(f: Features, d: TaskDefaults | None) -> Features:
    """The request's features over its task's defaults: what the request set wins."""
    if d is None:
        return f
    reasoning = f.reasoning
    if reasoning.level is None:
        budget = reasoning.budget_tokens or d.reasoning.budget_tokens
        reasoning = Reasoning(d.reasoning.level, budget)
    fmt = f.response_format if f.response_format.given else d.response_format
    return replace(f, reasoning=reasoning, response_format=fmt, default_options=d.engine_options)
