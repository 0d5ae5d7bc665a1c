"""Reasoning and structured output through the router, on both simulator flavours."""

from __future__ import annotations

from typing import Any

import grpc
import jsonschema
import orjson
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.agentic.support import PROVIDERS, Stack, reasoning, stack
from tests.router.helpers import decode

__all__ = ["stack"]

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["relevant", "irrelevant"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "score", "reasons"],
    "additionalProperties": False,
}


def think(level: int, provider: str, **kw: Any) -> router_pb2.GenerateRequest:
    fields: dict[str, Any] = {
        "prompt": "Why is the sky blue?",
        "task": common_pb2.TASK_ANALYSIS,  # qwen3:8b, a thinking model
        "provider": PROVIDERS[provider],
        "reasoning": common_pb2.ReasoningOptions(level=level),  # type: ignore[arg-type]
    }
    fields.update(kw)
    return router_pb2.GenerateRequest(**fields)


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_reasoning_streams_before_the_answer_on_its_own_channel(
    stack: Stack, provider: str
) -> None:
    got = await stack.generate(think(common_pb2.REASONING_LEVEL_ON, provider))
    kinds = [k for k in got.kinds if k in ("reasoning", "delta")]
    assert kinds[0] == "reasoning"
    assert "delta" in kinds
    assert kinds.index("delta") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    assert reasoning(got).startswith("Okay")
    assert "Okay" not in got.text
    end = got.end
    assert end.usage.reasoning_tokens > 0
    assert end.usage.completion_tokens > end.usage.reasoning_tokens
    t = end.timings
    # TTFT is the first token of either kind: the reasoning here.
    assert 0 < t.time_to_first_reasoning_ms <= t.time_to_first_answer_ms
    assert t.time_to_first_token_ms == pytest.approx(t.time_to_first_reasoning_ms, abs=1.0)
    wire = stack.wire(provider)["params"]
    if provider == "ollama":
        assert wire["think"] is True
    else:
        assert wire["chat_template_kwargs"] == {"enable_thinking": True}


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_reasoning_off_is_sent_and_nothing_is_thought(stack: Stack, provider: str) -> None:
    got = await stack.generate(think(common_pb2.REASONING_LEVEL_OFF, provider))
    assert reasoning(got) == ""
    assert got.text
    assert got.end.usage.reasoning_tokens == 0
    assert got.end.timings.time_to_first_reasoning_ms == 0
    wire = stack.wire(provider)["params"]
    if provider == "ollama":
        assert wire["think"] is False
    else:
        assert wire["chat_template_kwargs"] == {"enable_thinking": False}


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_an_effort_level_on_an_on_off_model_is_sent_as_on(
    stack: Stack, provider: str
) -> None:
    got = await stack.generate(think(common_pb2.REASONING_LEVEL_HIGH, provider))
    assert reasoning(got)
    wire = stack.wire(provider)["params"]
    assert wire.get("think", wire.get("chat_template_kwargs")) in (
        True,
        {"enable_thinking": True},
    )
    assert "reasoning_effort" not in wire


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_thinking_asked_of_a_model_without_it_is_refused(stack: Stack, provider: str) -> None:
    req = think(common_pb2.REASONING_LEVEL_ON, provider, task=common_pb2.TASK_REFLECTION)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.generate(req)
    d = decode(err.value)
    assert d.code.name == "FAILED_PRECONDITION"
    assert d.reason == "FEATURE_UNSUPPORTED"
    assert d.fields == ["reasoning.level"]
    assert "gemma3:4b" in d.message
    # Refused before any engine was involved: nothing against the engines in the stats.
    assert not stack.app.recorder.drain().aggregates
    assert stack.sims[provider].stats.requests_total == 0


async def test_a_thinking_budget_is_refused_on_ollama_and_sent_to_vllm(stack: Stack) -> None:
    opts = common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_ON, budget_tokens=64)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.generate(think(0, "ollama", reasoning=opts))
    assert decode(err.value).fields == ["reasoning.budget_tokens"]
    await stack.generate(think(0, "vllm", reasoning=opts))
    assert stack.wire("vllm")["params"]["thinking_token_budget"] == 64


def structured(provider: str, fmt: common_pb2.ResponseFormat) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(
        prompt="Is this passage relevant?",
        task=common_pb2.TASK_RETRIEVAL_EVALUATION,
        provider=PROVIDERS[provider],
        response_format=fmt,
    )


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_a_json_schema_answer_is_valid_for_the_schema(stack: Stack, provider: str) -> None:
    fmt = common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="relevance",
        json_schema=orjson.dumps(SCHEMA).decode(),
        strict=True,
    )
    got = await stack.generate(structured(provider, fmt))
    jsonschema.validate(orjson.loads(got.text), SCHEMA)
    assert got.end.finish_reason == router_pb2.FINISH_REASON_STOP
    wire = stack.wire(provider)["params"]
    if provider == "ollama":
        assert wire["format"] == SCHEMA
    else:
        assert wire["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "relevance", "schema": SCHEMA, "strict": True},
        }


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_a_json_object_answer_parses(stack: Stack, provider: str) -> None:
    fmt = common_pb2.ResponseFormat(type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    got = await stack.generate(structured(provider, fmt))
    assert isinstance(orjson.loads(got.text), dict)
    wire = stack.wire(provider)["params"]
    assert wire.get("format", wire.get("response_format")) in ("json", {"type": "json_object"})


@pytest.mark.parametrize(
    ("fmt", "field"),
    [
        (
            common_pb2.ResponseFormat(
                type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="x", json_schema="{nope"
            ),
            "response_format.json_schema",
        ),
        (
            common_pb2.ResponseFormat(
                type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="x", json_schema="[1]"
            ),
            "response_format.json_schema",
        ),
        (
            common_pb2.ResponseFormat(
                type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema='{"type":"object"}'
            ),
            "response_format.name",
        ),
        (
            common_pb2.ResponseFormat(
                type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT, json_schema='{"type":"object"}'
            ),
            "response_format.json_schema",
        ),
    ],
)
async def test_a_bad_response_format_is_invalid_argument_naming_the_field(
    stack: Stack, fmt: common_pb2.ResponseFormat, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.generate(structured("vllm", fmt))
    d = decode(err.value)
    assert d.code.name == "INVALID_ARGUMENT"
    assert d.fields == [field]
    assert not stack.app.recorder.drain().aggregates
