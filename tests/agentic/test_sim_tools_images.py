"""Tool calls, tool results, images, engine options, logprobs and Embed options through the
router, on both simulator flavours."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.agentic.support import PROVIDERS, Stack, png, stack, tool_calls
from tests.router.helpers import decode

__all__ = ["stack"]

SEARCH = router_pb2.Tool(
    name="search_memory",
    description="Search the memory graph",
    parameters_json=orjson.dumps(
        {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query", "limit"],
        }
    ).decode(),
)


def agent(
    provider: str, prompt: str = "Use search_memory to find the note", **kw: object
) -> router_pb2.GenerateRequest:
    fields: dict[str, Any] = {
        "prompt": prompt,
        "task": common_pb2.TASK_ANALYSIS,  # qwen3:8b calls tools
        "provider": PROVIDERS[provider],
        "tools": [SEARCH],
    }
    fields.update(kw)
    return router_pb2.GenerateRequest(**fields)


async def _refused(stack: Stack, req: router_pb2.GenerateRequest) -> tuple[str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.generate(req)
    d = decode(err.value)
    return d.code.name, d.fields


async def test_a_tool_call_streams_as_deltas_and_ends_with_tool_calls_on_both(
    stack: Stack,
) -> None:
    got = {p: await stack.generate(agent(p)) for p in ("ollama", "vllm")}
    calls = {p: tool_calls(c) for p, c in got.items()}
    for p, c in got.items():
        assert c.end.finish_reason == router_pb2.FINISH_REASON_TOOL_CALLS, p
        assert c.text == ""
        [(call_id, name, args)] = calls[p]
        assert call_id
        assert name == "search_memory"
        assert isinstance(args["query"], str)
        assert isinstance(args["limit"], int)
    # Ollama sends a whole call (one fragment), vLLM fragments of the arguments text.
    assert [m.WhichOneof("event") for m in got["ollama"].messages].count("tool_call") == 1
    assert [m.WhichOneof("event") for m in got["vllm"].messages].count("tool_call") > 1
    assert got["ollama"].end.raw_finish_reason == "stop"
    assert got["vllm"].end.raw_finish_reason == "tool_calls"
    # The same request, the same call from both engines.
    assert calls["ollama"][0][1:] == calls["vllm"][0][1:]
    assert stack.wire("ollama")["params"]["tools"][0]["function"]["name"] == "search_memory"
    assert stack.wire("vllm")["params"]["tool_choice"] == "auto"


async def test_required_tool_choice_forces_a_call_on_vllm_and_is_refused_on_ollama(
    stack: Stack,
) -> None:
    choice = router_pb2.ToolChoice(mode=router_pb2.TOOL_CHOICE_MODE_REQUIRED)
    got = await stack.generate(agent("vllm", prompt="hello", tool_choice=choice))
    assert [c[1] for c in tool_calls(got)] == ["search_memory"]
    assert stack.wire("vllm")["params"]["tool_choice"] == "required"
    assert await _refused(stack, agent("ollama", tool_choice=choice)) == (
        "FAILED_PRECONDITION",
        ["tool_choice.mode"],
    )


async def test_a_named_function_choice_is_sent_as_vllm_expects(stack: Stack) -> None:
    choice = router_pb2.ToolChoice(
        mode=router_pb2.TOOL_CHOICE_MODE_FUNCTION, function_name="search_memory"
    )
    got = await stack.generate(agent("vllm", prompt="hello", tool_choice=choice))
    assert tool_calls(got)
    assert stack.wire("vllm")["params"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "search_memory"},
    }


async def test_tool_choice_none_on_ollama_offers_no_tools(stack: Stack) -> None:
    choice = router_pb2.ToolChoice(mode=router_pb2.TOOL_CHOICE_MODE_NONE)
    got = await stack.generate(agent("ollama", tool_choice=choice))
    assert not tool_calls(got)
    assert got.text
    assert "tools" not in stack.wire("ollama")["params"]


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_a_tool_result_in_the_history_gets_an_answer(stack: Stack, provider: str) -> None:
    history = [
        router_pb2.Message(role=router_pb2.ROLE_USER, content="Use search_memory for the note"),
        router_pb2.Message(
            role=router_pb2.ROLE_ASSISTANT,
            reasoning="I should search.",
            tool_calls=[
                router_pb2.ToolCall(
                    id="call_1", name="search_memory", arguments_json='{"query":"note"}'
                )
            ],
        ),
        router_pb2.Message(role=router_pb2.ROLE_TOOL, tool_call_id="call_1", content="found: x"),
    ]
    req = agent(provider, prompt="")
    req.messages.extend(history)
    got = await stack.generate(req)
    assert got.text
    assert not tool_calls(got)
    assert got.end.finish_reason == router_pb2.FINISH_REASON_STOP


async def test_a_tool_the_model_cannot_call_is_refused(stack: Stack) -> None:
    # gemma3:4b has no tool support on either engine.
    req = agent("vllm", task=common_pb2.TASK_REFLECTION)
    assert await _refused(stack, req) == ("FAILED_PRECONDITION", ["tools"])
    assert not stack.app.recorder.drain().aggregates


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.tools.add(name="bad name!"), "tools[1].name"),
        (lambda r: r.tools.add(name="search_memory"), "tools[1].name"),
        (
            lambda r: r.tools.add(name="t2", parameters_json="not json"),
            "tools[1].parameters_json",
        ),
        (
            lambda r: r.tool_choice.CopyFrom(
                router_pb2.ToolChoice(mode=router_pb2.TOOL_CHOICE_MODE_FUNCTION, function_name="x")
            ),
            "tool_choice.function_name",
        ),
        (
            lambda r: r.messages.add(role=router_pb2.ROLE_TOOL, tool_call_id="nope", content="x"),
            "messages[0].tool_call_id",
        ),
    ],
)
async def test_bad_tool_fields_are_invalid_argument_naming_the_field(
    stack: Stack, mutate: object, field: str
) -> None:
    req = agent("vllm", prompt="")
    if field.startswith("tools") or field.startswith("tool_choice"):
        req.prompt = "hi"
    mutate(req)  # type: ignore[operator]
    code, fields = await _refused(stack, req)
    assert code == "INVALID_ARGUMENT"
    assert field in fields


def look(provider: str, task: int, image: bytes) -> router_pb2.GenerateRequest:
    msg = router_pb2.Message(
        role=router_pb2.ROLE_USER,
        content="What is in this picture?",
        images=[router_pb2.Image(data=image)],
    )
    return router_pb2.GenerateRequest(
        task=task,  # type: ignore[arg-type]
        provider=PROVIDERS[provider],
        messages=[msg],
    )


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_an_image_reaches_a_vision_model(stack: Stack, provider: str) -> None:
    got = await stack.generate(look(provider, common_pb2.TASK_REFLECTION, png()))  # gemma3:4b
    assert got.text
    assert got.end.finish_reason == router_pb2.FINISH_REASON_STOP


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_an_image_for_a_model_without_vision_is_refused(stack: Stack, provider: str) -> None:
    req = look(provider, common_pb2.TASK_ANALYSIS, png())  # qwen3:8b has no vision
    assert await _refused(stack, req) == ("FAILED_PRECONDITION", ["messages[0].images"])
    assert stack.sims[provider].stats.requests_total == 0


async def test_bytes_that_are_no_image_are_invalid(stack: Stack) -> None:
    req = look("ollama", common_pb2.TASK_REFLECTION, b"hello")
    assert await _refused(stack, req) == ("INVALID_ARGUMENT", ["messages[0].images[0].data"])


async def test_num_ctx_reaches_ollama_which_drops_the_head_of_a_long_prompt(stack: Stack) -> None:
    long_prompt = " ".join(f"w{i}" for i in range(400))
    req = router_pb2.GenerateRequest(
        prompt=long_prompt, provider=common_pb2.PROVIDER_OLLAMA, engine_options={"num_ctx": "64"}
    )
    got = await stack.generate(req)
    assert got.end.usage.prompt_tokens == 64  # what the model saw: the tail only
    entry = stack.wire("ollama")
    assert entry["options"]["num_ctx"] == 64
    assert entry["truncated_prompt_tokens"] > 300


async def test_engine_options_go_to_the_engine_that_knows_them(stack: Stack) -> None:
    req = router_pb2.GenerateRequest(
        prompt="q",
        provider=common_pb2.PROVIDER_VLLM,
        engine_options={"min_p": "0.05", "repetition_penalty": "1.1", "top_k": "20"},
    )
    await stack.generate(req)
    params = stack.wire("vllm")["params"]
    assert (params["min_p"], params["repetition_penalty"], params["top_k"]) == (0.05, 1.1, 20)
    req = router_pb2.GenerateRequest(
        prompt="q", provider=common_pb2.PROVIDER_OLLAMA, engine_options={"keep_alive": "5m"}
    )
    await stack.generate(req)
    assert stack.wire("ollama")["keep_alive"] == "5m"


async def test_an_engine_option_the_engine_lacks_or_no_engine_allows_is_refused(
    stack: Stack,
) -> None:
    req = router_pb2.GenerateRequest(
        prompt="q", provider=common_pb2.PROVIDER_VLLM, engine_options={"num_ctx": "8192"}
    )
    assert await _refused(stack, req) == ("FAILED_PRECONDITION", ['engine_options["num_ctx"]'])
    req = router_pb2.GenerateRequest(prompt="q", engine_options={"mirostat": "2"})
    assert await _refused(stack, req) == ("INVALID_ARGUMENT", ['engine_options["mirostat"]'])
    req = router_pb2.GenerateRequest(prompt="q", engine_options={"num_ctx": "big"})
    assert await _refused(stack, req) == ("INVALID_ARGUMENT", ['engine_options["num_ctx"]'])


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_logprobs_come_with_each_answer_token(stack: Stack, provider: str) -> None:
    req = router_pb2.GenerateRequest(
        prompt="q",
        provider=PROVIDERS[provider],
        options=router_pb2.GenerationOptions(logprobs=True, top_logprobs=2, max_tokens=5),
    )
    got = await stack.generate(req)
    lps = [lp for m in got.messages if m.HasField("delta") for lp in m.delta.logprobs]
    assert "".join(lp.token for lp in lps) == got.text
    assert all(lp.logprob <= 0 and len(lp.top) == 2 for lp in lps)


async def test_top_logprobs_without_logprobs_is_invalid(stack: Stack) -> None:
    req = router_pb2.GenerateRequest(
        prompt="q", options=router_pb2.GenerationOptions(top_logprobs=2)
    )
    assert await _refused(stack, req) == ("INVALID_ARGUMENT", ["options.top_logprobs"])


@pytest.mark.parametrize("provider", ["ollama", "vllm"])
async def test_embed_dimensions_shorten_the_vectors(stack: Stack, provider: str) -> None:
    resp = await stack.stub.Embed(
        router_pb2.EmbedRequest(inputs=["a", "b"], provider=PROVIDERS[provider], dimensions=64)
    )
    assert [len(e.values) for e in resp.embeddings] == [64, 64]


async def test_embed_without_truncation_refuses_a_too_long_input_on_ollama(stack: Stack) -> None:
    long_text = "word " * 600  # mxbai-embed-large has a 512-token context
    ok = await stack.stub.Embed(
        router_pb2.EmbedRequest(inputs=[long_text], provider=common_pb2.PROVIDER_OLLAMA)
    )
    assert ok.embeddings
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Embed(
            router_pb2.EmbedRequest(
                inputs=[long_text], provider=common_pb2.PROVIDER_OLLAMA, truncate=False
            )
        )
    assert decode(err.value).code.name == "INVALID_ARGUMENT"


async def test_embed_truncation_is_asked_of_vllm(stack: Stack) -> None:
    long_text = "word " * 600
    ok = await stack.stub.Embed(
        router_pb2.EmbedRequest(inputs=[long_text], provider=common_pb2.PROVIDER_VLLM)
    )
    assert ok.embeddings
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Embed(
            router_pb2.EmbedRequest(
                inputs=[long_text], provider=common_pb2.PROVIDER_VLLM, truncate=False
            )
        )
    assert decode(err.value).code.name == "INVALID_ARGUMENT"
