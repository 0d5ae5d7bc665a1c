"""The Ollama flavour, driven by the official ``ollama`` client (and raw HTTP for the edges)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import httpx
import ollama
import orjson
import pytest

from llmsim import Flavor, RunningSimulator
from llmsim._textgen import count_tokens

SimFactory = Callable[..., Awaitable[RunningSimulator]]
MSG = [{"role": "user", "content": "What is in my memory graph?"}]


async def test_chat_stream(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        parts = [p async for p in await client.chat(model="qwen3:8b", messages=MSG, stream=True)]
    *tokens, final = parts
    assert tokens
    assert all(p.done is False for p in tokens)
    assert all(p.message.role == "assistant" and p.message.content for p in tokens)
    assert final.done is True
    assert final.done_reason == "stop"
    assert final.message.content == ""
    assert final.eval_count == len(tokens) == 24
    assert final.prompt_eval_count == count_tokens("<|user|>\nWhat is in my memory graph?\n") + 5
    assert final.total_duration
    assert final.eval_duration
    assert final.prompt_eval_duration
    assert final.total_duration >= final.eval_duration
    text = "".join(p.message.content or "" for p in tokens)
    assert count_tokens(text) == final.eval_count


async def test_chat_non_stream_matches_stream(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        full = await client.chat(model="qwen3:8b", messages=MSG, stream=False)
        streamed = [p async for p in await client.chat(model="qwen3:8b", messages=MSG, stream=True)]
    assert full.done
    assert full.done_reason == "stop"
    assert full.message.content == "".join(p.message.content or "" for p in streamed)
    assert full.eval_count == 24


async def test_generate_stream_and_options(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        parts = [
            p
            async for p in await client.generate(
                model="qwen3:8b", prompt="Summarise", options={"num_predict": 5}, stream=True
            )
        ]
        full = await client.generate(model="qwen3:8b", prompt="Summarise", stream=False)
        stopped = await client.generate(
            model="qwen3:8b", prompt="Summarise", options={"stop": ["."]}, stream=False
        )
    *tokens, final = parts
    assert len(tokens) == final.eval_count == 5
    assert final.done_reason == "length"
    assert final.context  # generate returns the (deprecated) context ids
    assert full.response
    assert full.response.startswith("".join(p.response or "" for p in tokens))
    assert stopped.response
    assert "." not in stopped.response
    assert stopped.done_reason == "stop"


async def test_embed_and_legacy_embeddings(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        one = await client.embed(model="mxbai-embed-large", input="hello world")
        many = await client.embed(model="nomic-embed-text", input=["a", "b c", "a"])
        legacy = await client.embeddings(model="mxbai-embed-large", prompt="hello world")
        short = await client.embed(model="mxbai-embed-large", input="hello world", dimensions=256)
    assert len(one.embeddings) == 1
    assert len(one.embeddings[0]) == 1024
    assert [len(v) for v in many.embeddings] == [768, 768, 768]
    assert many.embeddings[0] == many.embeddings[2] != many.embeddings[1]
    for vec in [*one.embeddings, *many.embeddings, legacy.embedding, *short.embeddings]:
        assert math.isclose(math.fsum(x * x for x in vec), 1.0, rel_tol=1e-9)
    assert list(legacy.embedding) == list(one.embeddings[0])
    assert len(short.embeddings[0]) == 256
    assert many.prompt_eval_count == 4  # a + b c + a


async def test_list_show_ps_version(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        listed = await client.list()
        assert (await client.ps()).models == []
        await client.chat(model="qwen3:8b", messages=MSG)
        ps = await client.ps()
        shown = await client.show("qwen3:8b")
        emb = await client.show("mxbai-embed-large")
    names = {m.model for m in listed.models}
    assert {"qwen3:8b", "gemma3:4b", "deepseek-r1:14b", "llama3.2:3b", "qwen3:30b-a3b"} <= names
    assert {"llama3.3:70b", "mxbai-embed-large:latest", "nomic-embed-text:latest"} <= names
    assert [m.model for m in ps.models] == ["qwen3:8b"]
    assert ps.models[0].expires_at is not None
    assert shown.capabilities
    assert "completion" in shown.capabilities
    assert shown.modelinfo
    assert shown.modelinfo["qwen3.context_length"] == 40960
    assert shown.details
    assert shown.details.family == "qwen3"
    assert emb.capabilities == ["embedding"]


async def test_keep_alive_zero_unloads_and_empty_chat_loads(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        loaded = await client.chat(model="gemma3:4b", messages=[])
        assert loaded.done_reason == "load"
        assert [m.model for m in (await client.ps()).models] == ["gemma3:4b"]
        await client.chat(model="gemma3:4b", messages=MSG, keep_alive=0)
        assert (await client.ps()).models == []


async def test_unknown_model_is_404(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        with pytest.raises(ollama.ResponseError) as chat_err:
            await client.chat(model="nope:1b", messages=MSG)
        with pytest.raises(ollama.ResponseError) as stream_err:
            async for _ in await client.chat(model="nope:1b", messages=MSG, stream=True):
                pass
        with pytest.raises(ollama.ResponseError) as embed_err:
            await client.embed(model="nope", input="x")
        with pytest.raises(ollama.ResponseError) as show_err:
            await client.show("nope")
    assert chat_err.value.status_code == 404
    assert chat_err.value.error == "model 'nope:1b' not found"
    assert stream_err.value.status_code == 404
    assert embed_err.value.status_code == 404
    assert show_err.value.status_code == 404


async def test_embedding_model_cannot_chat(ollama_sim: RunningSimulator) -> None:
    async with ollama.AsyncClient(host=ollama_sim.base_url) as client:
        with pytest.raises(ollama.ResponseError) as err:
            await client.chat(model="mxbai-embed-large", messages=MSG)
    assert err.value.status_code == 400
    assert "does not support chat" in err.value.error


async def test_midstream_error_surfaces_in_client(ollama_sim: RunningSimulator) -> None:
    headers = {"X-Sim-Fault": "midstream_error_after=2"}
    got: list[str] = []

    async def read_all(client: ollama.AsyncClient) -> None:
        async for part in await client.chat(model="qwen3:8b", messages=MSG, stream=True):
            got.append(part.message.content or "")

    async with ollama.AsyncClient(host=ollama_sim.base_url, headers=headers) as client:
        with pytest.raises(ollama.ResponseError) as err:
            await read_all(client)
    assert len(got) == 2
    assert err.value.error == "an error was encountered while running the model"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/api/chat", b"", "missing request body"),
        ("/api/generate", b"{not json", None),
        ("/api/embed", b'{"model": "mxbai-embed-large", "input": 5}', "invalid input type"),
        ("/api/chat", b'{"messages": []}', "model is required"),
    ],
)
async def test_bad_requests_are_400(
    ollama_sim: RunningSimulator,
    http: httpx.AsyncClient,
    path: str,
    body: bytes,
    message: str | None,
) -> None:
    resp = await http.post(ollama_sim.base_url + path, content=body)
    assert resp.status_code == 400
    error = orjson.loads(resp.content)["error"]
    assert isinstance(error, str)
    assert error
    if message is not None:
        assert error == message


async def test_root_and_head(ollama_sim: RunningSimulator, http: httpx.AsyncClient) -> None:
    got = await http.get(ollama_sim.base_url + "/")
    assert got.status_code == 200
    assert got.text == "Ollama is running"
    head = await http.head(ollama_sim.base_url + "/")
    assert head.status_code == 200
    version = await http.get(ollama_sim.base_url + "/api/version")
    assert orjson.loads(version.content)["version"]


async def test_custom_catalogue(make_sim: SimFactory) -> None:
    from llmsim import ModelSpec

    sim = await make_sim(
        flavor=Flavor.OLLAMA,
        models=[
            ModelSpec(name="tiny:1b"),
            ModelSpec(name="emb", kind="embedding", embedding_dim=8),
        ],
    )
    async with ollama.AsyncClient(host=sim.base_url) as client:
        listed = await client.list()
        vec = await client.embed(model="emb:latest", input="x")
    assert {m.model for m in listed.models} == {"tiny:1b", "emb:latest"}
    assert len(vec.embeddings[0]) == 8
