"""The router against a real engine: llama.cpp's llama-server, as the OpenAI-compatible (vLLM)
provider. Random weights, so the text is noise; what the engine enforces (a JSON Schema grammar,
the tool-call grammar, the reasoning parser) is checked through the router."""

from __future__ import annotations

import math

import jsonschema
import orjson

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.agentic.support import reasoning, tool_calls
from tests.llamacpp.conftest import Engines, router_for
from tests.router.helpers import collect

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["relevant", "irrelevant"]},
        "confident": {"type": "boolean"},
    },
    "required": ["label", "confident"],
    "additionalProperties": False,
}
PARAMS = {
    "type": "object",
    "properties": {"scope": {"type": "string", "enum": ["notes", "graph"]}},
    "required": ["scope"],
}
VLLM = common_pb2.PROVIDER_VLLM
OFF = common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_OFF)


def _request(**fields: object) -> router_pb2.GenerateRequest:
    base: dict[str, object] = {
        "prompt": "Is this passage relevant?",
        "task": common_pb2.TASK_ANALYSIS,  # qwen3:8b → the server's alias
        "provider": VLLM,
    }
    base.update(fields)
    return router_pb2.GenerateRequest(**base)  # type: ignore[arg-type]


async def test_a_json_schema_answer_is_valid_json_for_the_schema(engines: Engines) -> None:
    fmt = common_pb2.ResponseFormat(
        type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="relevance",
        json_schema=orjson.dumps(SCHEMA).decode(),
        strict=True,
    )
    async with router_for(engines.chat) as r:
        for seed in (1, 2, 3):
            opts = router_pb2.GenerationOptions(max_tokens=200, seed=seed)
            got = await collect(
                r.stub.Generate(_request(response_format=fmt, reasoning=OFF, options=opts))
            )
            jsonschema.validate(orjson.loads(got.text), SCHEMA)
            assert got.end.finish_reason == router_pb2.FINISH_REASON_STOP
            assert got.end.raw_finish_reason == "stop"


async def test_reasoning_arrives_on_the_reasoning_channel(engines: Engines) -> None:
    on = common_pb2.ReasoningOptions(level=common_pb2.REASONING_LEVEL_ON)
    async with router_for(engines.chat) as r:
        opts = router_pb2.GenerationOptions(max_tokens=40, seed=1)
        got = await collect(r.stub.Generate(_request(reasoning=on, options=opts)))
    assert reasoning(got)
    assert "<think>" not in got.text
    assert "</think>" not in got.text
    kinds = [k for k in got.kinds if k in ("reasoning", "delta")]
    assert kinds[0] == "reasoning"  # thinking first
    end = got.end
    assert end.usage.reasoning_tokens > 0
    assert end.timings.time_to_first_reasoning_ms > 0
    assert end.timings.time_to_first_token_ms <= end.timings.time_to_first_reasoning_ms + 1


async def test_a_tool_call_streams_as_tool_call_deltas_and_ends_with_tool_calls(
    engines: Engines,
) -> None:
    tool = router_pb2.Tool(
        name="search_memory",
        description="Search the memory graph",
        parameters_json=orjson.dumps(PARAMS).decode(),
    )
    required = router_pb2.ToolChoice(mode=router_pb2.TOOL_CHOICE_MODE_REQUIRED)
    async with router_for(engines.tools) as r:
        opts = router_pb2.GenerationOptions(max_tokens=300, seed=1)
        got = await collect(
            r.stub.Generate(
                _request(tools=[tool], tool_choice=required, reasoning=OFF, options=opts)
            )
        )
    calls = tool_calls(got)
    assert calls
    for call_id, name, args in calls:
        assert call_id
        assert name == "search_memory"
        jsonschema.validate(args, PARAMS)
    assert got.kinds.count("tool_call") > len(calls)  # fragments: the name, then the arguments
    assert got.end.finish_reason == router_pb2.FINISH_REASON_TOOL_CALLS
    assert got.end.raw_finish_reason == "tool_calls"


async def test_embeddings_come_back_normalised(engines: Engines) -> None:
    async with router_for(engines.embed) as r:
        # The tiny model's vectors have 64 components where the catalogue's mxbai-embed-large
        # has 1024: asking for 64 is what makes the router's size check expect them.
        resp = await r.stub.Embed(
            router_pb2.EmbedRequest(inputs=["alpha beta", "gamma"], provider=VLLM, dimensions=64)
        )
    assert resp.provider == VLLM
    a, b = (list(e.values) for e in resp.embeddings)
    assert len(a) == len(b) == 64
    assert math.isclose(math.fsum(x * x for x in a), 1.0, rel_tol=1e-3)
    assert a != b
    assert resp.prompt_tokens > 0


async def test_logprobs_come_with_the_answer_tokens(engines: Engines) -> None:
    opts = router_pb2.GenerationOptions(max_tokens=8, seed=1, logprobs=True, top_logprobs=2)
    async with router_for(engines.chat) as r:
        got = await collect(r.stub.Generate(_request(reasoning=OFF, options=opts)))
    lps = [lp for m in got.messages if m.HasField("delta") for lp in m.delta.logprobs]
    assert lps
    assert all(lp.logprob <= 0 and len(lp.top) == 2 for lp in lps)
