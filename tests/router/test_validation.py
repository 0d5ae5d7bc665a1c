"""Bad input gets INVALID_ARGUMENT naming the field; unknown models get NOT_FOUND."""

from __future__ import annotations

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.router.conftest import Harness
from tests.router.helpers import collect, decode

R = router_pb2
Opts = router_pb2.GenerationOptions

BAD_GENERATE = [
    ("empty", R.GenerateRequest(), ["messages"]),
    ("blank prompt", R.GenerateRequest(prompt="   "), ["messages"]),
    (
        "empty message",
        R.GenerateRequest(messages=[R.Message(role=R.ROLE_USER, content="")]),
        ["messages[0].content"],
    ),
    ("unknown task", R.GenerateRequest(prompt="x", task=99), ["task"]),  # type: ignore[arg-type]
    ("embedding task", R.GenerateRequest(prompt="x", task=common_pb2.TASK_EMBEDDING), ["task"]),
    ("unknown provider", R.GenerateRequest(prompt="x", provider=7), ["provider"]),  # type: ignore[arg-type]
    (
        "unknown role",
        R.GenerateRequest(messages=[R.Message(role=9, content="x")]),  # type: ignore[arg-type]
        ["messages[0].role"],
    ),
    (
        "negative max tokens",
        R.GenerateRequest(prompt="x", options=Opts(max_tokens=-1)),
        ["options.max_tokens"],
    ),
    (
        "zero max tokens",
        R.GenerateRequest(prompt="x", options=Opts(max_tokens=0)),
        ["options.max_tokens"],
    ),
    (
        "hot temperature",
        R.GenerateRequest(prompt="x", options=Opts(temperature=2.5)),
        ["options.temperature"],
    ),
    (
        "negative temperature",
        R.GenerateRequest(prompt="x", options=Opts(temperature=-0.1)),
        ["options.temperature"],
    ),
    (
        "nan temperature",
        R.GenerateRequest(prompt="x", options=Opts(temperature=float("nan"))),
        ["options.temperature"],
    ),
    ("top_p zero", R.GenerateRequest(prompt="x", options=Opts(top_p=0.0)), ["options.top_p"]),
    ("empty stop", R.GenerateRequest(prompt="x", options=Opts(stop=[""])), ["options.stop[0]"]),
    ("too long", R.GenerateRequest(prompt="x" * 200_001), ["prompt"]),
    (
        "both prompt and messages",
        R.GenerateRequest(prompt="x", messages=[R.Message(content="y")]),
        ["prompt"],
    ),
    ("request id too long", R.GenerateRequest(prompt="x", request_id="r" * 129), ["request_id"]),
    (
        "several at once",
        R.GenerateRequest(prompt="x", options=Opts(max_tokens=-5, temperature=9)),
        ["options.max_tokens", "options.temperature"],
    ),
]


@pytest.mark.parametrize(("case", "req", "fields"), BAD_GENERATE, ids=[c[0] for c in BAD_GENERATE])
async def test_bad_generate_names_the_field(
    harness: Harness, case: str, req: router_pb2.GenerateRequest, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(harness.stub.Generate(req))
    d = decode(info.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT, case
    assert d.reason == "INVALID_REQUEST"
    assert d.fields == fields
    for f in fields:
        assert f in d.message
    assert harness.ollama.seen == []  # nothing reached an engine


BAD_EMBED = [
    ("no inputs", R.EmbedRequest(), ["inputs"]),
    ("too many", R.EmbedRequest(inputs=["a"] * 257), ["inputs"]),
    ("empty input", R.EmbedRequest(inputs=["a", " "]), ["inputs[1]"]),
    ("too long", R.EmbedRequest(inputs=["x" * 200_001]), ["inputs"]),
]


@pytest.mark.parametrize(("case", "req", "fields"), BAD_EMBED, ids=[c[0] for c in BAD_EMBED])
async def test_bad_embed_names_the_field(
    harness: Harness, case: str, req: router_pb2.EmbedRequest, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.Embed(req)
    d = decode(info.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT, case
    assert d.fields == fields


async def test_unknown_model_is_not_found(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(harness.stub.Generate(R.GenerateRequest(prompt="x", model="gpt-17")))
    d = decode(info.value)
    assert (d.code, d.reason, d.metadata["model"]) == (
        grpc.StatusCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        "gpt-17",
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.Embed(R.EmbedRequest(inputs=["a"], model="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
