"""RouterClient.generate against a fake router on a real grpc.aio server."""

from __future__ import annotations

import re

import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from clients.llm import (
    CallOptions,
    FinishReason,
    LLMInvalidResponseError,
    Message,
    Provider,
    RequestCancelledError,
    Role,
    RouterClient,
    StreamEnd,
    StreamStart,
    Task,
    TextChunk,
    Timings,
    Usage,
)
from clients.llm.testing import EmbedScript, FakeRouter, FakeRouterServicer, GenerateScript


async def test_events_arrive_in_order_as_typed_dataclasses(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["a", "b", "c"], fallback=True, attempt=2)
    events = [event async for event in client.generate("hi", request_id="rid-1")]
    assert events == [
        StreamStart(
            request_id="rid-1",
            provider=Provider.VLLM,
            model="qwen3:8b",
            engine_model="Qwen/Qwen3-8B",
            fallback=True,
            attempt=2,
        ),
        TextChunk("a"),
        TextChunk("b"),
        TextChunk("c"),
        StreamEnd(
            finish_reason=FinishReason.STOP,
            usage=Usage(3, 3, 6),
            timings=Timings(12.5, 80.0, 40.0),
        ),
    ]


async def test_collect_returns_the_whole_result(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(
        deltas=["Hello", " there"],
        provider=Provider.OLLAMA,
        model="llama3.2:3b",
        engine_model="llama3.2:3b",
        finish_reason=FinishReason.LENGTH,
        usage=Usage(7, 2, 9),
    )
    stream = client.generate("hi")
    result = await stream.collect()
    assert result.text == "Hello there"
    assert result.provider is Provider.OLLAMA
    assert (result.model, result.engine_model) == ("llama3.2:3b", "llama3.2:3b")
    assert result.finish_reason is FinishReason.LENGTH
    assert result.usage == Usage(7, 2, 9)
    assert result.timings == Timings(12.5, 80.0, 40.0)
    assert result.fallback is False
    assert result.request_id == stream.request_id
    assert stream.end is not None
    assert stream.start is not None


async def test_text_yields_only_the_chunks(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["x", "y"])
    assert [chunk async for chunk in client.generate("hi").text()] == ["x", "y"]


async def test_collect_after_partial_iteration_keeps_earlier_events(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["one ", "two ", "three"])
    stream = client.generate("hi")
    assert isinstance(await anext(stream), StreamStart)
    assert await anext(stream) == TextChunk("one ")
    assert stream.partial_text == "one "
    result = await stream.collect()
    assert result.text == "one two three"
    # Collecting again reads nothing new and returns the same result.
    assert await stream.collect() == result


async def test_request_id_is_generated_and_sent_in_field_and_metadata(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    stream = client.generate("hi")
    assert re.fullmatch(r"[0-9a-f]{32}", stream.request_id)
    result = await stream.collect()
    (call,) = servicer.generate_calls
    assert call.request.request_id == stream.request_id
    assert call.metadata["x-request-id"] == stream.request_id
    assert result.request_id == stream.request_id


async def test_given_request_id_and_routing_key_are_propagated(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    result = await client.generate("hi", request_id="mine", routing_key="query-7").collect()
    (call,) = servicer.generate_calls
    assert call.request.request_id == "mine"
    assert call.request.routing_key == "query-7"
    assert call.metadata["x-request-id"] == "mine"
    assert result.request_id == "mine"


async def test_each_call_gets_a_fresh_request_id(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    await client.generate("a").collect()
    await client.generate("b").collect()
    first, second = (c.request.request_id for c in servicer.generate_calls)
    assert first != second


async def test_request_fields_are_converted(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    await client.generate(
        task="retrieval_evaluation",
        provider="vllm",
        model="qwen3:8b",
        system="be brief",
        messages=[
            Message(Role.USER, "q1"),
            Message("assistant", "a1"),
            {"role": "user", "content": "q2"},
        ],
        max_tokens=64,
        temperature=0.0,
        top_p=0.5,
        stop=["\n\n", "END"],
        seed=42,
    ).collect()
    request = servicer.generate_calls[0].request
    assert request.task == common_pb2.TASK_RETRIEVAL_EVALUATION
    assert request.provider == common_pb2.PROVIDER_VLLM
    assert request.model == "qwen3:8b"
    assert request.system == "be brief"
    assert request.prompt == ""
    assert [(m.role, m.content) for m in request.messages] == [
        (router_pb2.ROLE_USER, "q1"),
        (router_pb2.ROLE_ASSISTANT, "a1"),
        (router_pb2.ROLE_USER, "q2"),
    ]
    options = request.options
    assert options.max_tokens == 64
    assert options.HasField("temperature")
    assert options.temperature == 0.0
    assert options.top_p == 0.5
    assert list(options.stop) == ["\n\n", "END"]
    assert options.seed == 42


async def test_unset_sampling_options_stay_unset(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    await client.generate("hi", task=Task.SYNTHESIS).collect()
    request = servicer.generate_calls[0].request
    assert request.prompt == "hi"
    assert request.task == common_pb2.TASK_SYNTHESIS
    assert request.provider == common_pb2.PROVIDER_UNSPECIFIED
    for name in ("max_tokens", "temperature", "top_p", "seed"):
        assert not request.options.HasField(name)


async def test_proto_enum_values_are_accepted(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    await client.generate(
        "hi", task=common_pb2.TASK_REFLECTION, provider=common_pb2.PROVIDER_OLLAMA
    ).collect()
    request = servicer.generate_calls[0].request
    assert request.task == common_pb2.TASK_REFLECTION
    assert request.provider == common_pb2.PROVIDER_OLLAMA


async def test_invalid_enum_string_is_rejected_before_calling(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    with pytest.raises(ValueError, match="invalid task 'poetry'"):
        client.generate("hi", task="poetry")
    assert servicer.generate_calls == []


async def test_call_options_and_client_defaults_reach_the_server(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    async with RouterClient(
        fake_router.target, timeout=30.0, metadata=[("x-team", "memos")]
    ) as client:
        await client.generate("a").collect()
        await client.generate(
            "b", options=CallOptions(timeout=5.0, metadata=[("x-trace", "t1")])
        ).collect()
    default_call, per_call = servicer.generate_calls
    assert default_call.time_remaining is not None
    assert 20.0 < default_call.time_remaining < 31.0  # the wire rounds deadlines up
    assert default_call.metadata["x-team"] == "memos"
    assert per_call.time_remaining is not None
    assert 3.0 < per_call.time_remaining < 6.0
    assert per_call.metadata["x-team"] == "memos"
    assert per_call.metadata["x-trace"] == "t1"


async def test_timeout_none_means_no_deadline(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    async with RouterClient(fake_router.target, timeout=None) as client:
        await client.generate("a").collect()
    assert servicer.generate_calls[0].time_remaining is None


async def test_metadata_cannot_override_the_request_id(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    options = CallOptions(metadata=[("x-request-id", "spoofed")])
    await client.generate("a", request_id="real", options=options).collect()
    assert servicer.generate_calls[0].metadata["x-request-id"] == "real"


async def test_from_channel_leaves_the_callers_channel_open(
    fake_router: FakeRouter, servicer: FakeRouterServicer
) -> None:
    import grpc.aio

    channel = grpc.aio.insecure_channel(fake_router.target)
    try:
        async with RouterClient.from_channel(channel) as client:
            assert client.channel is channel
            await client.generate("a").collect()
        # Still usable after the client closed.
        await RouterClient.from_channel(channel).generate("b").collect()
    finally:
        await channel.close()
    assert len(servicer.generate_calls) == 2


async def test_stream_without_end_event_is_an_invalid_response(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["cut"], send_end=False)
    stream = client.generate("hi")
    with pytest.raises(LLMInvalidResponseError, match="without an end event") as caught:
        await stream.collect()
    assert caught.value.partial_text == "cut"
    assert caught.value.request_id == stream.request_id


async def test_cancel_stops_the_server_call_and_raises_cancelled(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["first", "never"], hang=True, interrupt_after=1)
    stream = client.generate("hi")
    assert isinstance(await anext(stream), StreamStart)
    assert await anext(stream) == TextChunk("first")
    stream.cancel()
    with pytest.raises(RequestCancelledError) as caught:
        await stream.collect()
    assert caught.value.partial_text == "first"
    await servicer.cancelled.wait()


async def test_leaving_the_context_manager_early_cancels_the_call(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.generate = GenerateScript(deltas=["first"], hang=True, interrupt_after=1)
    async with client.generate("hi") as stream:
        async for event in stream:
            if isinstance(event, TextChunk):
                break
    await servicer.cancelled.wait()


async def test_embed_returns_vectors_in_order(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    servicer.embed = EmbedScript(
        vectors=[[0.6, 0.8], [1.0, 0.0]], provider=Provider.VLLM, model="bge-m3", fallback=True
    )
    result = await client.embed(["a", "b"], provider=Provider.VLLM, routing_key="q")
    assert result.embeddings == [pytest.approx([0.6, 0.8]), [1.0, 0.0]]
    assert (result.provider, result.model, result.fallback) == (Provider.VLLM, "bge-m3", True)
    (call,) = servicer.embed_calls
    assert list(call.request.inputs) == ["a", "b"]
    assert call.request.provider == common_pb2.PROVIDER_VLLM
    assert call.request.routing_key == "q"
    assert re.fullmatch(r"[0-9a-f]{32}", call.request.request_id)
    assert call.metadata["x-request-id"] == call.request.request_id == result.request_id


async def test_embed_takes_a_single_string_as_one_input(
    client: RouterClient, servicer: FakeRouterServicer
) -> None:
    result = await client.embed("just one")
    assert len(result.embeddings) == 1
    assert list(servicer.embed_calls[0].request.inputs) == ["just one"]
