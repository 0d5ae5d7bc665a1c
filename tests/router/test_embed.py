"""Embed over both engines: vectors in input order, model names, errors with ERR_5004."""

from __future__ import annotations

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.router.conftest import Harness
from tests.router.fake_engine import Script
from tests.router.helpers import decode


async def test_embed_ollama_default_model(harness: Harness) -> None:
    resp = await harness.stub.Embed(router_pb2.EmbedRequest(inputs=["a", "b"], request_id="e1"))
    assert resp.request_id == "e1"
    assert resp.provider == common_pb2.PROVIDER_OLLAMA
    assert resp.model == "mxbai-embed-large"
    assert [e.values[0] for e in resp.embeddings] == [1.0, 2.0]
    assert resp.prompt_tokens == 6
    seen = harness.ollama.seen[0]
    assert (seen.path, seen.body["model"], seen.body["input"]) == (
        "/api/embed",
        "mxbai-embed-large",
        ["a", "b"],
    )
    assert seen.headers["x-request-id"] == "e1"


async def test_embed_vllm_restores_input_order(harness: Harness) -> None:
    req = router_pb2.EmbedRequest(inputs=["a", "b", "c"], provider=common_pb2.PROVIDER_VLLM)
    resp = await harness.stub.Embed(req)
    assert [e.values[0] for e in resp.embeddings] == [1.0, 2.0, 3.0]
    assert harness.vllm.seen[0].body["model"] == "mixedbread-ai/mxbai-embed-large-v1"


async def test_embed_falls_back_to_vllm_when_ollama_is_down(harness: Harness) -> None:
    harness.ollama.default = Script(connect_error=True)
    resp = await harness.stub.Embed(router_pb2.EmbedRequest(inputs=["a"]))
    assert resp.provider == common_pb2.PROVIDER_VLLM
    assert resp.fallback


async def test_embed_failure_carries_err_5004(harness: Harness) -> None:
    harness.vllm.default = Script(status=503)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.Embed(
            router_pb2.EmbedRequest(inputs=["a"], provider=common_pb2.PROVIDER_VLLM)
        )
    d = decode(info.value)
    assert (d.code, d.reason, d.metadata["code"]) == (
        grpc.StatusCode.UNAVAILABLE,
        "EMBEDDING_SERVICE_ERROR",
        "ERR_5004",
    )
    assert len(harness.vllm.seen) == 3  # retried
