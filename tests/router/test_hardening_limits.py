"""Issue 21's size and decode cases on the router, one test per case of the audit: huge
messages, stop strings and routing keys, 10 000 empty fields, a 100 k-character model name, an
engine line with no newline, a 3-million-dimension embedding, a 100 kB engine error, malformed
protobuf and invalid UTF-8."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from aiohttp import web

from clients.gen.llmgateway.v1 import router_pb2
from router_service.errors import ErrorKind, RouterError
from router_service.limits import MAX_MESSAGES
from router_service.providers import OllamaProvider
from router_service.providers._base import ProviderLimits
from router_service.providers._http import build_http_client, iter_line_batches
from router_service.values import ChatCall, ChatMessage, SamplingOptions
from tests.control.conftest import violations as fields
from tests.router.conftest import Harness
from tests.router.fake_engine import Script

P = router_pb2
TRAILER_LIMIT = 16 * 1024


async def generate_error(
    harness: Harness, request: router_pb2.GenerateRequest
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in harness.stub.Generate(request):
            pass
    return exc.value


def trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    md = err.trailing_metadata() or ()
    return sum(len(k) + len(v) for k, v in md) + len(err.details() or "")


def test_the_receive_limit_follows_the_prompt_limit() -> None:
    """The audit's case: the router accepted 32 MB messages although prompts are capped at
    200 k characters."""
    from tests.router.conftest import make_settings

    s = make_settings()
    assert s.max_receive_message_bytes < 2 * 1024 * 1024
    assert make_settings(max_prompt_chars=1_000_000).max_receive_message_bytes > 4_000_000


async def test_a_32mb_message_is_refused_before_it_is_parsed(harness: Harness) -> None:
    err = await generate_error(harness, P.GenerateRequest(prompt="x" * (8 * 1024 * 1024)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert harness.ollama.seen == []


async def test_16_one_megabyte_stop_strings_are_refused(harness: Harness) -> None:
    """16 x 1 MB does not even fit the receive limit; long stop strings under it are named."""
    big = P.GenerateRequest(prompt="hi", options=P.GenerationOptions(stop=["s" * 1_000_000] * 16))
    assert (await generate_error(harness, big)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    long = P.GenerateRequest(prompt="hi", options=P.GenerationOptions(stop=["s" * 5000] * 2))
    err = await generate_error(harness, long)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(err) == ["options.stop[0]", "options.stop[1]"]


async def test_a_10mb_routing_key_is_refused(harness: Harness) -> None:
    huge = P.GenerateRequest(prompt="hi", routing_key="k" * 10_000_000)
    assert (await generate_error(harness, huge)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = await generate_error(harness, P.GenerateRequest(prompt="hi", routing_key="k" * 300))
    assert fields(err) == ["routing_key"]
    embed = P.EmbedRequest(inputs=["a"], routing_key="k" * 300)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await harness.stub.Embed(embed)
    assert fields(exc.value) == ["routing_key"]


async def test_a_100k_character_model_name_is_refused(harness: Harness) -> None:
    err = await generate_error(harness, P.GenerateRequest(prompt="hi", model="m" * 100_000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(err) == ["model"]
    assert trailer_bytes(err) < TRAILER_LIMIT


async def test_10000_empty_messages_give_invalid_argument_not_resource_exhausted(
    harness: Harness,
) -> None:
    """The audit's case: 10 000 empty messages gave RESOURCE_EXHAUSTED (trailers past 16 kB)."""
    many = [P.Message(role=P.ROLE_USER, content="") for _ in range(10_000)]
    err = await generate_error(harness, P.GenerateRequest(messages=many))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(err) == ["messages"]
    # Under the count limit, every empty one is a violation: the first ten are named.
    some = [P.Message(role=P.ROLE_USER, content="") for _ in range(MAX_MESSAGES)]
    err = await generate_error(harness, P.GenerateRequest(messages=some))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    named = fields(err)
    assert named[:2] == ["messages[0].content", "messages[1].content"]
    assert named[-1] == "(more)"
    assert trailer_bytes(err) < TRAILER_LIMIT


async def test_10000_empty_embed_inputs_give_invalid_argument(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await harness.stub.Embed(P.EmbedRequest(inputs=[""] * 10_000))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(exc.value) == ["inputs"]
    assert trailer_bytes(exc.value) < TRAILER_LIMIT


async def test_an_embedding_of_3_million_dimensions_is_not_relayed(harness: Harness) -> None:
    """The audit's case: an embedding of 3 million dimensions was relayed and recorded as a
    success. (A smaller wrong length shows the same check without the 3M-float body.)"""
    harness.ollama.push(Script(embed_dim=3000))
    harness.vllm.push(Script(embed_dim=3000))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await harness.stub.Embed(P.EmbedRequest(inputs=["a", "b"]))
    assert exc.value.code() != grpc.StatusCode.OK
    assert "dimensions" in (exc.value.details() or "")
    stats = harness.app.stats
    assert sum(stats.succeeded.values()) == 0  # never recorded as a success
    assert stats.failures[("ollama", ErrorKind.LLM_INVALID_RESPONSE)] >= 1
    assert (await harness.stub.Embed(P.EmbedRequest(inputs=["a"]))).embeddings[0].values
    assert stats.succeeded["ollama"] == 1


async def test_a_100kb_engine_error_message_is_cut(harness: Harness) -> None:
    """The audit's case: a 100 kB engine error message gave RESOURCE_EXHAUSTED instead of the
    engine's code."""
    boom = Script(status=400, error_body={"error": "e" * 100_000})
    harness.ollama.push(boom)
    err = await generate_error(harness, P.GenerateRequest(prompt="hi"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(err.details() or "") < 1000
    assert trailer_bytes(err) < TRAILER_LIMIT


@pytest.fixture
async def no_newline_engine() -> AsyncIterator[str]:
    """An Ollama that answers 200 and then streams bytes that never contain a newline."""
    sent = {"bytes": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "application/x-ndjson"})
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while sent["bytes"] < 64 * 1024 * 1024:
                await resp.write(chunk)
                sent["bytes"] += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()
    assert sent["bytes"] < 64 * 1024 * 1024  # the router gave up long before


async def test_an_engine_body_without_newlines_is_an_invalid_response(
    no_newline_engine: str,
) -> None:
    """The audit's case: the NDJSON/SSE line buffer grew without bound on a body with no
    newline (~22 MB/s per request, quadratic copying)."""
    provider = OllamaProvider(build_http_client(no_newline_engine, ProviderLimits(), 2))
    call = ChatCall("m", (ChatMessage("user", "hi"),), SamplingOptions(), "rid")
    try:
        with pytest.raises(RouterError) as err:
            async for _ in provider.stream_chat(call):
                pass
    finally:
        await provider.aclose()
    assert err.value.kind is ErrorKind.LLM_INVALID_RESPONSE
    assert "longer than" in err.value.message


async def test_the_line_splitter_keeps_lines_and_bounds_the_buffer() -> None:
    async def body(*chunks: bytes) -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    got = [b async for b in iter_line_batches(body(b"a", b"b\nc", b"d\n\ne", b"f"))]
    assert got == [[b"ab"], [b"cd"], [b"ef"]]
    with pytest.raises(RouterError):
        async for _ in iter_line_batches(body(*[b"y" * 1000] * 20), "ollama", "m", 10_000):
            pass
    with pytest.raises(RouterError):  # a long line inside one read is caught too
        async for _ in iter_line_batches(body(b"z" * 20_000 + b"\n"), max_line_bytes=10_000):
            pass


def _raw_call(
    channel: grpc.aio.Channel, method: str
) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def test_malformed_protobuf_and_invalid_utf8_are_invalid_argument_with_one_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's case: malformed protobuf or invalid UTF-8 gave UNKNOWN and a full ERROR
    traceback in the log per call."""
    embed = _raw_call(harness.channel, "/llmgateway.v1.RouterService/Embed")
    # Field 1 (request_id, a string) holding 0xff 0xfe: not UTF-8. Then a truncated varint.
    bad_utf8 = b"\x0a\x02\xff\xfe"
    truncated = b"\x08\xff\xff"
    with caplog.at_level(logging.WARNING):
        for payload in [bad_utf8, truncated] * 10:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await embed(payload)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid EmbedRequest" in (exc.value.details() or "")
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_non_ascii_request_id_is_invalid_argument_not_internal(harness: Harness) -> None:
    """Found by the fuzz suite: a request id of "¡" went back in the x-request-id metadata,
    which must be ASCII, and the call failed with INTERNAL "Invalid metadata"."""
    err = await generate_error(harness, P.GenerateRequest(prompt="hi", request_id="¡"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(err) == ["request_id"]
