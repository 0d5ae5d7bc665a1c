"""The engines' HTTP transport (httpx's API over aiohttp): pooling, aborts, limits, errors.

Against real servers on port 0: the backend simulator, or a tiny aiohttp app that records
which client connection each request came on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web

from llmsim import Faults, Flavor, SimConfig, simulator
from router_service.errors import ErrorKind, RouterError
from router_service.providers import OpenAICompatProvider, ProviderLimits, build_http_client
from router_service.values import ChatCall, ChatMessage, EmbedCall, SamplingOptions
from tests._wait import wait_for

CALL = ChatCall("Qwen/Qwen3-8B", (ChatMessage("user", "hi"),), SamplingOptions(), "rid-1")


async def _wait(predicate: Callable[[], bool], within: float = 5.0) -> None:
    # The simulator's counters have no change notification (tests/_wait.py).
    await wait_for(predicate, within, what="the simulator's counters")


async def _drain(provider: OpenAICompatProvider, call: ChatCall = CALL) -> str:
    return "".join([c.text async for c in provider.stream_chat(call)])


@pytest.fixture
async def sse_app() -> AsyncIterator[tuple[str, list[object]]]:
    """An SSE endpoint that records the client's (host, port) of every request."""
    peers: list[object] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
        await resp.write(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", peers
    await runner.cleanup()


async def test_finished_streams_reuse_one_connection(sse_app: tuple[str, list[object]]) -> None:
    url, peers = sse_app
    provider = OpenAICompatProvider(build_http_client(url, ProviderLimits(), 4))
    try:
        for _ in range(3):
            assert await _drain(provider) == "hi"
    finally:
        await provider.aclose()
    assert len(peers) == 3
    assert len(set(peers)) == 1, "every request opened a new connection"


async def test_base_url_path_prefix_is_kept(sse_app: tuple[str, list[object]]) -> None:
    url, _ = sse_app
    client = build_http_client(url + "/", ProviderLimits(), 4)
    provider = OpenAICompatProvider(client)
    try:
        assert await _drain(provider) == "hi"
    finally:
        await provider.aclose()
    prefixed = build_http_client(url + "/proxy", ProviderLimits(), 4)
    assert str(OpenAICompatProvider(prefixed)._chat_url).endswith("/proxy/v1/chat/completions")
    await prefixed.aclose()


async def test_closing_a_stream_early_aborts_the_generation() -> None:
    async with simulator(SimConfig(flavor=Flavor.VLLM, itl_ms=50, completion_tokens=100)) as sim:
        provider = OpenAICompatProvider(build_http_client(sim.base_url, ProviderLimits(), 4))
        try:
            stream = provider.stream_chat(CALL)
            first = await anext(stream)
            assert first.text
            await stream.aclose()
            await _wait(lambda: sim.stats.aborted_total == 1 and sim.stats.running == 0)
        finally:
            await provider.aclose()


async def test_a_full_pool_fails_with_no_free_connection() -> None:
    async with simulator(SimConfig(flavor=Flavor.VLLM, itl_ms=50, completion_tokens=100)) as sim:
        client = build_http_client(sim.base_url, ProviderLimits(), max_connections=1)
        client.timeout = httpx.Timeout(5.0, pool=0.05)
        provider = OpenAICompatProvider(client)
        try:
            holder = provider.stream_chat(CALL)
            await anext(holder)  # the one connection is busy
            with pytest.raises(RouterError) as err:
                await _drain(provider)
            assert err.value.kind is ErrorKind.LLM_UNAVAILABLE
            assert "no free connection" in err.value.message
            await holder.aclose()
            short = ChatCall(CALL.model, CALL.messages, SamplingOptions(max_tokens=2), "rid-2")
            assert await _drain(provider, short)  # the slot came back
        finally:
            await provider.aclose()


async def _failure(faults: Faults, read_timeout_s: float = 5.0) -> RouterError:
    async with simulator(SimConfig(flavor=Flavor.VLLM, faults=faults)) as sim:
        limits = ProviderLimits(connect_timeout_s=1.0, read_timeout_s=read_timeout_s)
        provider = OpenAICompatProvider(build_http_client(sim.base_url, limits, 4))
        try:
            with pytest.raises(RouterError) as err:
                await _drain(provider)
        finally:
            await provider.aclose()
    return err.value


async def test_a_stalled_stream_is_a_timeout() -> None:
    err = await _failure(Faults(stall_after_tokens=2), read_timeout_s=0.2)
    assert err.kind is ErrorKind.LLM_TIMEOUT
    assert "ReadTimeout" in err.message


async def test_a_broken_body_is_a_broken_connection() -> None:
    err = await _failure(Faults(disconnect_after_tokens=2))
    assert err.kind is ErrorKind.LLM_UNAVAILABLE
    assert err.retryable
    assert "connection broke" in err.message


async def test_nothing_listening_is_unreachable() -> None:
    provider = OpenAICompatProvider(
        build_http_client("http://127.0.0.1:9", ProviderLimits(connect_timeout_s=1.0), 4)
    )
    try:
        with pytest.raises(RouterError) as err:
            await _drain(provider)
    finally:
        await provider.aclose()
    assert err.value.kind is ErrorKind.LLM_UNAVAILABLE
    assert err.value.engine_down


async def test_vllm_embeddings_come_as_base64_float32() -> None:
    async with (
        simulator(SimConfig(flavor=Flavor.VLLM)) as sim,
        httpx.AsyncClient(base_url=sim.base_url) as plain,
    ):
        provider = OpenAICompatProvider(build_http_client(sim.base_url, ProviderLimits(), 4))
        try:
            call = EmbedCall("mixedbread-ai/mxbai-embed-large-v1", ("a", "b c"), "rid-e")
            out = await provider.embed(call)
        finally:
            await provider.aclose()
        resp = await plain.post(
            "/v1/embeddings",
            json={"model": call.model, "input": list(call.inputs), "encoding_format": "float"},
        )
        floats = [d["embedding"] for d in resp.json()["data"]]
    assert sim.context.log.entries()[-2]["params"]["encoding_format"] == "base64"
    assert [len(v) for v in out.vectors] == [1024, 1024]
    for got, want in zip(out.vectors, floats, strict=True):
        assert list(got) == pytest.approx(want, rel=1e-6, abs=1e-7)  # float32 of the same


async def test_malformed_base64_embedding_is_an_invalid_response() -> None:
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"index": 0, "embedding": "not base64!"}]})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    provider = OpenAICompatProvider(build_http_client(url, ProviderLimits(), 4))
    try:
        with pytest.raises(RouterError) as err:
            await provider.embed(EmbedCall("m", ("a",), "rid-e"))
    finally:
        await provider.aclose()
        await runner.cleanup()
    assert err.value.kind is ErrorKind.LLM_INVALID_RESPONSE
