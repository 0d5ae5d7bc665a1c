"""The /api/chat request body of a call: Ollama's own names for every feature."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from llmcore.features import OLLAMA_OPTIONS
from router_service.values import ChatCall, ChatMessage

# Ollama's `options` keys among the allowlist; keep_alive is top-level.
_IN_OPTIONS = frozenset(OLLAMA_OPTIONS) - {"keep_alive"}


def ollama_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        out["images"] = [base64.b64encode(i.data).decode() for i in m.images]
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "function": {"index": i, "name": c.name, "arguments": orjson.loads(c.arguments)},
            }
            for i, c in enumerate(m.tool_calls)
        ]
    if m.role == "tool":
        out["tool_name"] = m.tool_name
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning:
        out["thinking"] = m.reasoning
    return out


def ollama_chat_body(call: ChatCall, keep_alive: str) -> dict[str, Any]:
    f = call.features
    o = call.options
    engine = f.options_for(OLLAMA_OPTIONS.keys())
    opts: dict[str, Any] = {k: v for k, v in engine.items() if k in _IN_OPTIONS}
    if o.max_tokens is not None:  # the API's own field wins over an engine option
        opts["num_predict"] = o.max_tokens
    if o.temperature is not None:
        opts["temperature"] = o.temperature
    if o.top_p is not None:
        opts["top_p"] = o.top_p
    if o.stop:
        opts["stop"] = list(o.stop)
    if o.seed is not None:
        opts["seed"] = o.seed
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [ollama_message(m) for m in call.messages],
        "stream": True,
        "keep_alive": str(engine.get("keep_alive", keep_alive)),
    }
    level = f.reasoning.level
    if level is not None:
        if level in ("off", "on"):
            body["think"] = level == "on"
        else:  # an effort level where the model takes one, else just on
            body["think"] = level if "think_levels" in call.capabilities else True
    fmt = f.response_format
    if fmt.kind == "json_object":
        body["format"] = "json"
    elif fmt.kind == "json_schema":
        body["format"] = orjson.loads(fmt.schema)
    # Ollama has no tool_choice: "none" is served by not offering the tools (the capability
    # check refuses "required" and "function" before a call gets here).
    if f.tools and f.tool_choice.mode != "none":
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": orjson.loads(t.parameters),
                },
            }
            for t in f.tools
        ]
    if o.logprobs:
        body["logprobs"] = True
        if o.top_logprobs:
            body["top_logprobs"] = o.top_logprobs
    if opts:
        body["options"] = opts
    return body
