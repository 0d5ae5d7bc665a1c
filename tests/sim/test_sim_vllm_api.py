"""The vLLM flavour, driven by the official ``openai`` client (and raw HTTP for the edges)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmsim import RunningSimulator

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Plan my research."}]
MODEL = "Qwen/Qwen3-8B"


@pytest.fixture
async def client(vllm_sim: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=vllm_sim.base_url + "/v1", api_key="x", max_retries=0
    ) as c:
        yield c


async def test_chat_stream_with_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=MSGS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Request-Id": "req-42"},
    )
    chunks = [c async for c in stream]
    first, *middle, finish, usage_chunk = chunks
    assert all(c.id == "chatcmpl-req-42" for c in chunks)
    assert first.choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in middle]
    assert all(deltas)
    assert all(c.choices[0].finish_reason is None for c in middle)
    assert finish.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(deltas) == 24
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + 24
    assert usage_chunk.usage.prompt_tokens_details is not None
    assert usage_chunk.usage.prompt_tokens_details.cached_tokens == 0


async def test_chat_stream_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model=MODEL, messages=MSGS, stream=True)
    chunks = [c async for c in stream]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_chat_non_stream_matches_stream(client: openai.AsyncOpenAI) -> None:
    full = await client.chat.completions.create(model=MODEL, messages=MSGS, seed=7)
    stream = await client.chat.completions.create(model=MODEL, messages=MSGS, seed=7, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert full.choices[0].message.content == text
    assert full.object == "chat.completion"
    assert full.id.startswith("chatcmpl-")
    assert full.usage is not None
    assert full.usage.completion_tokens == 24
    limited = await client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=3)
    assert limited.choices[0].finish_reason == "length"
    assert limited.usage is not None
    assert limited.usage.completion_tokens == 3


async def test_completions(client: openai.AsyncOpenAI) -> None:
    full = await client.completions.create(model=MODEL, prompt="Once upon a time")
    assert full.id.startswith("cmpl-")
    assert full.choices[0].finish_reason == "length"  # OpenAI's default max_tokens is 16
    assert full.usage is not None
    assert full.usage.completion_tokens == 16
    stream = await client.completions.create(
        model=MODEL,
        prompt="Once upon a time",
        max_tokens=40,
        stop=["."],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert "." not in text
    assert finals[0].finish_reason == "stop"
    assert finals[0].model_extra == {"stop_reason": "."}
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == sum(
        1 for c in chunks if c.choices and c.choices[0].text
    )


async def test_embeddings_float_and_base64(client: openai.AsyncOpenAI) -> None:
    name = "mixedbread-ai/mxbai-embed-large-v1"
    b64 = await client.embeddings.create(model=name, input=["hello", "world"])  # client asks base64
    flt = await client.embeddings.create(model=name, input="hello", encoding_format="float")
    assert [len(d.embedding) for d in b64.data] == [1024, 1024]
    assert b64.data[0].embedding == pytest.approx(flt.data[0].embedding, rel=1e-6)
    for d in b64.data:
        assert math.isclose(math.fsum(x * x for x in d.embedding), 1.0, rel_tol=1e-5)
    assert flt.usage.prompt_tokens == 1
    assert b64.usage.total_tokens == 2
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model=MODEL, input="hello")


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert ids == [
        "Qwen/Qwen3-8B",
        "google/gemma-3-4b-it",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        "meta-llama/Llama-3.2-3B-Instruct",
        "Qwen/Qwen3-30B-A3B",
        "mixedbread-ai/mxbai-embed-large-v1",
    ]


async def test_unknown_model_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="nope", messages=MSGS)
    assert err.value.status_code == 404
    body = err.value.body
    assert isinstance(body, dict)
    assert body["message"] == "The model `nope` does not exist."
    assert body["type"] == "NotFoundError"
    assert body["code"] == 404
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=MSGS, stream=True)


async def test_midstream_error(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=MSGS,
        stream=True,
        extra_headers={"X-Sim-Fault": "midstream_error_after=2"},
    )
    got: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError) as err:
        await read_all()
    assert got[1:]
    assert len([g for g in got if g]) == 2
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == 500


async def test_validation_errors_are_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Stream options"):
        await client.chat.completions.create(
            model=MODEL, messages=MSGS, stream_options={"include_usage": True}
        )
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        await client.chat.completions.create(model=MODEL, messages=MSGS, max_tokens=10**6)


async def test_health_version_and_raw_sse(
    vllm_sim: RunningSimulator, http: httpx.AsyncClient
) -> None:
    health = await http.get(vllm_sim.base_url + "/health")
    assert health.status_code == 200
    assert health.content == b""
    version = await http.get(vllm_sim.base_url + "/version")
    assert orjson.loads(version.content)["version"]
    body = {"model": MODEL, "messages": MSGS, "stream": True, "max_tokens": 2}
    resp = await http.post(vllm_sim.base_url + "/v1/chat/completions", json=body)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = resp.text.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    payloads = [orjson.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert next(p["choices"][0]["delta"] for p in payloads) == {"role": "assistant", "content": ""}
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert payloads[-1]["choices"][0]["stop_reason"] is None
