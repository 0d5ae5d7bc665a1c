"""The typed client over the real router and both simulators: every feature in, every new event
and result field out."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from clients.llm import (
    FeatureUnsupportedError,
    FinishReason,
    ForceTool,
    Image,
    InvalidRequestError,
    Message,
    ReasoningChunk,
    ReasoningLevel,
    ResponseFormat,
    Role,
    RouterClient,
    SyncRouterClient,
    TextChunk,
    Tool,
    ToolCall,
    ToolCallChunk,
)
from tests.agentic.support import Stack, png, stack

__all__ = ["stack"]

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["a", "b"]}, "n": {"type": "integer"}},
    "required": ["label", "n"],
}
SEARCH = Tool(
    "search_memory",
    "Search the memory graph",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def _client(stack: Stack) -> RouterClient:
    return RouterClient(f"127.0.0.1:{stack.app.port}", timeout=10)


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_reasoning_events_and_result(stack: Stack, provider: str) -> None:
    async with _client(stack) as client:
        stream = client.generate("why?", task="analysis", provider=provider, reasoning="on")
        kinds = [type(e) async for e in stream if not isinstance(e, ToolCallChunk)]
        assert ReasoningChunk in kinds
        assert TextChunk in kinds
        result = await client.generate(
            "why?", task="analysis", provider=provider, reasoning=ReasoningLevel.ON
        ).collect()
    assert result.reasoning
    assert result.text
    assert result.usage.reasoning_tokens > 0
    assert 0 < result.timings.time_to_first_reasoning_ms <= result.timings.time_to_first_answer_ms


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_json_schema_and_tool_calls_typed(stack: Stack, provider: str) -> None:
    async with _client(stack) as client:
        got = await client.generate(
            "rate it",
            task="retrieval_evaluation",
            provider=provider,
            response_format=ResponseFormat.schema("rating", SCHEMA, strict=True),
        ).collect()
        jsonschema.validate(json.loads(got.text), SCHEMA)
        called = await client.generate(
            "Use search_memory", task="analysis", provider=provider, tools=[SEARCH]
        ).collect()
    assert called.finish_reason is FinishReason.TOOL_CALLS
    [call] = called.tool_calls
    assert call.name == "search_memory"
    assert isinstance(call.args["query"], str)


async def test_history_with_tool_results_images_and_forced_tools(stack: Stack) -> None:
    async with _client(stack) as client:
        history = [
            Message(Role.USER, "Use search_memory"),
            Message(Role.ASSISTANT, tool_calls=[ToolCall("c1", "search_memory", '{"query":"x"}')]),
            Message(Role.TOOL, "found", tool_call_id="c1"),
        ]
        answer = await client.generate(
            messages=history, task="analysis", provider="vllm", tools=[SEARCH]
        ).collect()
        assert answer.text
        assert answer.finish_reason is FinishReason.STOP
        forced = await client.generate(
            "hi", provider="vllm", tools=[SEARCH], tool_choice=ForceTool("search_memory")
        ).collect()
        assert [c.name for c in forced.tool_calls] == ["search_memory"]
        seen = await client.generate(
            messages=[Message("user", "what is it?", images=[Image(png())])], task="reflection"
        ).collect()
        assert seen.text
        with pytest.raises(FeatureUnsupportedError) as err:
            await client.generate(
                messages=[Message("user", "what?", images=[Image(png())])], task="analysis"
            ).collect()
        assert err.value.field_violations[0][0] == "messages[0].images"
        with pytest.raises(InvalidRequestError):
            await client.generate("q", engine_options={"mirostat": 1}).collect()
        opts = await client.generate(
            "q", provider="ollama", engine_options={"num_ctx": 32}
        ).collect()
        assert opts.text
        logp = await client.generate("q", logprobs=True, top_logprobs=1, max_tokens=3).collect()
        assert len(logp.logprobs) == 3
        vectors = await client.embed(["a"], dimensions=32)
        assert len(vectors.embeddings[0]) == 32


async def test_the_sync_client_takes_the_same_features(stack: Stack) -> None:
    def call() -> tuple[str, list[ToolCall]]:
        with SyncRouterClient(f"127.0.0.1:{stack.app.port}", timeout=10) as client:
            r = client.generate(
                "Use search_memory", task="analysis", reasoning="on", tools=[SEARCH]
            ).collect()
            return r.reasoning, r.tool_calls

    reasoning, calls = await asyncio.to_thread(call)
    assert reasoning
    assert calls[0].name == "search_memory"
