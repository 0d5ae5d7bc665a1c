"""Generate over both wire formats: order, usage, timings, ids, options, model names."""

from __future__ import annotations

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from tests.router.conftest import Harness
from tests.router.fake_engine import Script
from tests.router.helpers import collect

PROVIDERS = [("ollama", common_pb2.PROVIDER_OLLAMA), ("vllm", common_pb2.PROVIDER_VLLM)]


@pytest.mark.parametrize(("name", "provider"), PROVIDERS)
async def test_stream_order_usage_and_timings(
    harness: Harness, name: str, provider: common_pb2.Provider.ValueType
) -> None:
    req = router_pb2.GenerateRequest(prompt="hi", provider=provider)
    got = await collect(harness.stub.Generate(req))
    assert got.kinds[0] == "start"
    assert got.kinds[-1] == "end"
    assert set(got.kinds[1:-1]) == {"delta"}
    assert got.text == "Hello, world!"
    assert got.start.provider == provider
    assert got.start.model == "qwen3:8b"  # TASK_UNSPECIFIED → analysis → the primary model
    assert not got.start.fallback
    assert got.start.attempt == 1
    end = got.end
    assert end.finish_reason == router_pb2.FINISH_REASON_STOP
    assert (end.usage.prompt_tokens, end.usage.completion_tokens, end.usage.total_tokens) == (
        7,
        4,
        11,
    )
    assert 0 < end.timings.time_to_first_token_ms <= end.timings.total_ms


async def test_length_finish_reason(harness: Harness) -> None:
    harness.vllm.push(Script(finish_reason="length"))
    req = router_pb2.GenerateRequest(prompt="hi", provider=common_pb2.PROVIDER_VLLM)
    got = await collect(harness.stub.Generate(req))
    assert got.end.finish_reason == router_pb2.FINISH_REASON_LENGTH


async def test_vllm_gets_engine_model_name_options_and_usage_request(harness: Harness) -> None:
    opts = router_pb2.GenerationOptions(
        max_tokens=50, temperature=0.5, top_p=0.9, stop=["\n"], seed=42
    )
    req = router_pb2.GenerateRequest(
        system="be brief", prompt="hi", provider=common_pb2.PROVIDER_VLLM, options=opts
    )
    got = await collect(harness.stub.Generate(req))
    assert got.start.engine_model == "Qwen/Qwen3-8B"
    body = harness.vllm.seen[0].body
    assert harness.vllm.seen[0].path == "/v1/chat/completions"
    assert body["model"] == "Qwen/Qwen3-8B"
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["seed"]) == (
        50,
        0.5,
        0.9,
        ["\n"],
        42,
    )


async def test_ollama_gets_options_and_keep_alive(harness: Harness) -> None:
    opts = router_pb2.GenerationOptions(max_tokens=20, temperature=0.0, seed=7)
    msgs = [
        router_pb2.Message(role=router_pb2.ROLE_USER, content="q1"),
        router_pb2.Message(role=router_pb2.ROLE_ASSISTANT, content="a1"),
        router_pb2.Message(role=router_pb2.ROLE_USER, content="q2"),
    ]
    req = router_pb2.GenerateRequest(messages=msgs, task=common_pb2.TASK_SYNTHESIS, options=opts)
    got = await collect(harness.stub.Generate(req))
    assert got.start.model == "deepseek-r1:14b"  # seed: synthesis uses deepseek-r1:14b
    body = harness.ollama.seen[0].body
    assert harness.ollama.seen[0].path == "/api/chat"
    assert body["keep_alive"] == "30m"
    assert body["stream"] is True
    assert body["options"] == {"num_predict": 20, "temperature": 0.0, "seed": 7}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(
    ("task", "model"),
    [
        (common_pb2.TASK_CLASSIFICATION, "deepseek-r1:14b"),
        (common_pb2.TASK_ANALYSIS, "qwen3:8b"),
        (common_pb2.TASK_REFLECTION, "gemma3:4b"),
        (common_pb2.TASK_RETRIEVAL_EVALUATION, "gemma3:4b"),
        (common_pb2.TASK_VERIFICATION, "gemma3:4b"),
    ],
)
async def test_model_per_task(
    harness: Harness, task: common_pb2.Task.ValueType, model: str
) -> None:
    req = router_pb2.GenerateRequest(prompt="x", task=task)
    got = await collect(harness.stub.Generate(req))
    assert got.start.model == model
    assert harness.ollama.models_seen == [model]


async def test_model_override(harness: Harness) -> None:
    req = router_pb2.GenerateRequest(
        prompt="x", model="llama3.2:3b", provider=common_pb2.PROVIDER_VLLM
    )
    got = await collect(harness.stub.Generate(req))
    assert got.start.model == "llama3.2:3b"
    assert harness.vllm.models_seen == ["meta-llama/Llama-3.2-3B-Instruct"]


async def test_request_id_from_field_reaches_engine_and_trailer(harness: Harness) -> None:
    call = harness.stub.Generate(router_pb2.GenerateRequest(prompt="x", request_id="rid-field"))
    got = await collect(call)
    assert got.start.request_id == "rid-field"
    assert harness.ollama.seen[0].headers["x-request-id"] == "rid-field"
    assert ("x-request-id", "rid-field") in tuple(await call.trailing_metadata() or ())


async def test_request_id_from_metadata_then_generated(harness: Harness) -> None:
    call = harness.stub.Generate(
        router_pb2.GenerateRequest(prompt="x"), metadata=(("x-request-id", "rid-meta"),)
    )
    assert (await collect(call)).start.request_id == "rid-meta"
    got = await collect(harness.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
    generated = got.start.request_id
    assert len(generated) == 32
    assert harness.ollama.seen[-1].headers["x-request-id"] == generated


async def test_routing_to_vllm_by_settings() -> None:
    from tests.router.conftest import start_harness

    h = await start_harness(primary_provider="vllm", task_providers={"synthesis": "ollama"})
    try:
        a = await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
        b = await collect(
            h.stub.Generate(router_pb2.GenerateRequest(prompt="x", task=common_pb2.TASK_SYNTHESIS))
        )
        assert a.start.provider == common_pb2.PROVIDER_VLLM
        assert b.start.provider == common_pb2.PROVIDER_OLLAMA
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def test_health_and_reflection(harness: Harness) -> None:
    """Health always; reflection only when enabled (issue 21: off by default)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from tests.router.conftest import start_harness

    health = health_pb2_grpc.HealthStub(harness.channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service="llmgateway.v1.RouterService"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING

    async def one() -> object:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    off = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in off.ServerReflectionInfo(one()):
            pass
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED

    h = await start_harness(reflection=True)
    try:
        refl = reflection_pb2_grpc.ServerReflectionStub(h.channel)
        names: set[str] = set()
        async for r in refl.ServerReflectionInfo(one()):
            names = {s.name for s in r.list_services_response.service}
        assert {"llmgateway.v1.RouterService", "grpc.health.v1.Health"} <= names
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def test_get_status_reports_config_and_engine_probes() -> None:
    from tests.router.conftest import start_harness

    h = await start_harness(engine_probe_interval_s=0.05, router_id="rX")
    try:
        h.vllm.down = True
        assert h.app.engines is not None
        await h.app.engines.probe_all()
        status = await h.stub.GetStatus(router_pb2.GetStatusRequest())
        assert (status.router_id, status.config_version, status.config_state, status.phase) == (
            "rX",
            0,
            "standalone",
            "FACADE",
        )
        engines = {e.provider: e for e in status.engines}
        assert engines[common_pb2.PROVIDER_OLLAMA].healthy
        assert not engines[common_pb2.PROVIDER_VLLM].healthy
        assert "unreachable" in engines[common_pb2.PROVIDER_VLLM].detail
        assert engines[common_pb2.PROVIDER_OLLAMA].base_url == "http://ollama.test"
    finally:
        await h.channel.close()
        await h.app.stop(0)
