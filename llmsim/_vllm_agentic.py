"""vLLM's agentic request fields: ``chat_template_kwargs.enable_thinking`` and
``reasoning_effort`` (thinking, for a model with a reasoning parser), ``response_format`` /
``structured_outputs``, ``tools`` / ``tool_choice``, ``image_url`` content parts, ``logprobs``.

Simplification: the simulated vLLM thinks only when asked (``enable_thinking: true`` or a
``reasoning_effort``), where real Qwen3 on vLLM thinks unless told not to; the router always
says which it wants when the request (or its task) does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from llmsim._agentic import AgenticPlan, ToolSpec
from llmsim._config import ModelSpec

_EFFORTS = ("low", "medium", "high")


def vllm_plan(body: Mapping[str, Any], spec: ModelSpec) -> AgenticPlan | str:
    """The plan, or the message of a 400."""
    plan = AgenticPlan()
    caps = spec.capabilities
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        return "chat_template_kwargs must be an object"
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        return f"reasoning_effort must be one of {', '.join(_EFFORTS)}"
    # A template without a thinking switch ignores the kwarg, as vLLM's does.
    if "thinking" in caps:
        if effort is not None:
            plan.think = str(effort)
        elif kwargs and kwargs.get("enable_thinking") is True:
            plan.think = "on"
    err = _format(body, plan)
    if err:
        return err
    tools = body.get("tools")
    if tools:
        if "tools" not in caps:  # served without a tool-call parser for this model
            return (
                '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
                "to be set"
            )
        specs = _tools(tools)
        if isinstance(specs, str):
            return specs
        plan.tools = specs
        choice = body.get("tool_choice")
        if isinstance(choice, Mapping):
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, Mapping) else None
            if not any(t.name == name for t in specs):
                return f"tool_choice names an unknown function {name!r}"
            plan.tool_choice = str(name)
        elif choice in (None, "auto", "none", "required"):
            plan.tool_choice = choice
        else:
            return f"invalid tool_choice {choice!r}"
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") == "image_url":
                    if "vision" not in caps:
                        return f"{spec.name} is not a multimodal model"
                    why = _bad_url(part.get("image_url"))
                    if why:
                        return why
    if body.get("logprobs") is True:
        plan.logprobs = True
        top = body.get("top_logprobs")
        plan.top_logprobs = top if isinstance(top, int) and 0 <= top <= 20 else 0
    elif body.get("top_logprobs"):
        return "top_logprobs requires logprobs to be true"
    return plan


def _format(body: Mapping[str, Any], plan: AgenticPlan) -> str | None:
    rf = body.get("response_format")
    so = body.get("structured_outputs")
    if rf is not None:
        if not isinstance(rf, Mapping):
            return "response_format must be an object"
        kind = rf.get("type")
        if kind == "json_object":
            plan.json = True
        elif kind == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, Mapping) or not isinstance(js.get("schema"), Mapping):
                return "response_format.json_schema.schema is required"
            if not isinstance(js.get("name"), str):
                return "response_format.json_schema.name is required"
            plan.json, plan.schema = True, js["schema"]
        elif kind != "text":
            return f"invalid response_format type {kind!r}"
    elif isinstance(so, Mapping) and isinstance(so.get("json"), Mapping):
        plan.json, plan.schema = True, so["json"]
    return None


def _tools(tools: Any) -> list[ToolSpec] | str:
    if not isinstance(tools, list):
        return "tools must be a list"
    out: list[ToolSpec] = []
    for t in tools:
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            return "each tool needs type 'function' and function.name"
        params = fn.get("parameters")
        out.append(ToolSpec(fn["name"], params if isinstance(params, Mapping) else {}))
    return out


def _bad_url(image_url: Any) -> str | None:
    url = image_url.get("url") if isinstance(image_url, Mapping) else None
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
        return "image_url.url must be a data URL (data:<mime>;base64,...)"
    try:
        base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return "image_url.url: invalid base64 data"
    return None
