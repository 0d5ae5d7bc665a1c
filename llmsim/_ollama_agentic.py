"""Ollama's agentic request fields: ``think``, ``format``, ``tools``, ``messages[].images``,
``logprobs``, and ``options.num_ctx`` (a longer prompt silently loses its head, as Ollama's
runner does; the simulator logs it like Ollama's server log and records it per request)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llmsim._agentic import AgenticPlan, ToolSpec, bad_images
from llmsim._config import ModelSpec

log = logging.getLogger("llmsim.ollama")
_LEVELS = ("low", "medium", "high", "max")


def ollama_plan(body: Mapping[str, Any], spec: ModelSpec) -> AgenticPlan | str:
    """The plan, or the error message of a 400."""
    name = spec.name
    caps = spec.capabilities
    plan = AgenticPlan()
    think = body.get("think")
    if think is not None and think is not False:
        if think is not True and think not in _LEVELS:
            return f"invalid think value: {think!r}"
        if "thinking" not in caps:
            return f'"{name}" does not support thinking'
        plan.think = "on" if think is True else str(think)
    fmt = body.get("format")
    if fmt is not None and fmt != "":
        if fmt == "json":
            plan.json = True
        elif isinstance(fmt, Mapping):
            plan.json, plan.schema = True, fmt
        else:
            return 'invalid format: expected "json" or a JSON schema'
    tools = body.get("tools")
    if tools:
        if "tools" not in caps:
            return f'"{name}" does not support tools'
        specs = _tools(tools)
        if isinstance(specs, str):
            return specs
        plan.tools = specs
    for m in body.get("messages") or ():
        images = m.get("images") if isinstance(m, Mapping) else None
        if images:
            if "vision" not in caps:
                return f'"{name}" does not support images (it is not a vision model)'
            why = bad_images(images if isinstance(images, list) else [images])
            if why:
                return why
    if body.get("logprobs") is True:
        plan.logprobs = True
        top = body.get("top_logprobs")
        plan.top_logprobs = top if isinstance(top, int) and 0 <= top <= 20 else 0
    return plan


def _tools(tools: Any) -> list[ToolSpec] | str:
    if not isinstance(tools, list):
        return "tools must be a list"
    out: list[ToolSpec] = []
    for t in tools:
        fn = t.get("function") if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            return "each tool needs function.name"
        params = fn.get("parameters")
        out.append(ToolSpec(fn["name"], params if isinstance(params, Mapping) else {}))
    return out


def truncate_prompt(tokens: Sequence[str], num_ctx: Any, log_entry: dict[str, Any]) -> list[str]:
    """Keep the last ``num_ctx`` prompt tokens (Ollama keeps the tail of an over-long prompt).
    The cut is logged ("truncating input prompt", like Ollama's server) and recorded in the
    request log as ``truncated_prompt_tokens``."""
    if not isinstance(num_ctx, int) or isinstance(num_ctx, bool) or num_ctx <= 0:
        return list(tokens)
    if len(tokens) <= num_ctx:
        return list(tokens)
    log.warning("truncating input prompt limit=%d prompt=%d keep=%d", num_ctx, len(tokens), num_ctx)
    log_entry["truncated_prompt_tokens"] = len(tokens) - num_ctx
    return list(tokens[len(tokens) - num_ctx :])
