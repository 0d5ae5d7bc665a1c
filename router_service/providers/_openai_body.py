"""The /v1/chat/completions request body of a call: vLLM's (OpenAI's) names for every feature."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from llmcore.features import VLLM_OPTIONS
from router_service.values import ChatCall, ChatMessage

# vLLM's reasoning_effort has no "max": the highest it takes is "high".
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def openai_message(m: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role}
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        for img in m.images:
            url = f"data:{img.mime_type};base64,{base64.b64encode(img.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out["content"] = parts
    else:
        out["content"] = m.content
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning:
        out["reasoning"] = m.reasoning
    return out


def openai_chat_body(call: ChatCall) -> dict[str, Any]:
    f = call.features
    o = call.options
    body: dict[str, Any] = {
        "model": call.model,
        "messages": [openai_message(m) for m in call.messages],
        "stream": True,
        # Without this vLLM sends no token counts on a stream.
        "stream_options": {"include_usage": True},
    }
    body.update(f.options_for(VLLM_OPTIONS.keys()))
    if o.max_tokens is not None:
        body["max_tokens"] = o.max_tokens
    if o.temperature is not None:
        body["temperature"] = o.temperature
    if o.top_p is not None:
        body["top_p"] = o.top_p
    if o.stop:
        body["stop"] = list(o.stop)
    if o.seed is not None:
        body["seed"] = o.seed
    if call.continue_final:
        # vLLM continues the final assistant message instead of starting a new turn.
        body["continue_final_message"] = True
        body["add_generation_prompt"] = False
    if o.logprobs:
        body["logprobs"] = True
        if o.top_logprobs:
            body["top_logprobs"] = o.top_logprobs
    r = f.reasoning
    if r.level is not None:
        if r.level != "off" and r.level != "on" and "think_levels" in call.capabilities:
            body["reasoning_effort"] = _EFFORT[r.level]
        else:  # Qwen3 / DeepSeek-R1 templates switch thinking with this kwarg
            body["chat_template_kwargs"] = {"enable_thinking": r.on}
    if r.budget_tokens is not None:
        body["thinking_token_budget"] = r.budget_tokens
    fmt = f.response_format
    if fmt.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt.kind == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": fmt.name,
                "schema": orjson.loads(fmt.schema),
                "strict": fmt.strict,
            },
        }
    if f.tools:
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
        tc = f.tool_choice
        if tc.mode == "function":
            body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        else:
            body["tool_choice"] = tc.mode
    return body
