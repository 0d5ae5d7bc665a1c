"""Optional API keys for memOS on the router (issue 21): the audit found the router had no
authentication at all. With keys set every RouterService call needs one; the client's name is
on its span and in a per-client counter; health stays open."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.gen.llmgateway.v1 import router_pb2
from router_service.api_keys import load_api_keys
from tests.router.conftest import start_harness

MEMOS_A = "memos-a-key-0123456789"


async def test_a_router_with_keys_refuses_calls_without_one() -> None:
    h = await start_harness(api_keys={"memos-a": MEMOS_A})
    try:
        request = router_pb2.GetStatusRequest()
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.GetStatus(request)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer not-a-key-at-all"),)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await h.stub.GetStatus(request, metadata=wrong)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ok = (("authorization", f"Bearer {MEMOS_A}"),)
        async for _ in h.stub.Generate(router_pb2.GenerateRequest(prompt="hi"), metadata=ok):
            pass
        value = h.app.registry.get_sample_value(
            "llm_router_client_requests_total", {"client": "memos-a", "method": "Generate"}
        )
        assert value == 1
        health = health_pb2_grpc.HealthStub(h.channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    finally:
        await h.channel.close()
        await h.app.stop(0)


def test_api_keys_file(tmp_path: Path) -> None:
    f = tmp_path / "keys.yaml"
    f.write_text("memos-b: memos-b-key-0123456789\n")
    assert load_api_keys({"memos-a": MEMOS_A}, f) == {
        MEMOS_A: "memos-a",
        "memos-b-key-0123456789": "memos-b",
    }
    with pytest.raises(ValueError, match="16 or more"):
        load_api_keys({"x": "short"}, None)
    with pytest.raises(ValueError, match="the same"):
        load_api_keys({"a": MEMOS_A, "b": MEMOS_A}, None)
