"""The mirror in a real router against scripted engines: what is mirrored, tagged and recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from router_service.config import from_snapshot
from router_service.errors import ErrorKind
from router_service.shadow import ShadowMirror
from tests.router.conftest import Harness, start_harness
from tests.router.fake_engine import Script
from tests.router.helpers import collect
from tests.router.shadow_support import pairs, shadow_config, shadow_snapshot, wait_mirror


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = await start_harness()
    yield harness
    await harness.channel.close()
    await harness.app.stop(0)


def _mirror(h: Harness) -> ShadowMirror:
    assert h.app.shadow is not None
    return h.app.shadow


async def _generate(h: Harness, rid: str, **kw: object) -> str:
    req = router_pb2.GenerateRequest(request_id=rid, **kw)  # type: ignore[arg-type]
    if not req.messages:
        req.prompt = req.prompt or "hi"
    got = await collect(h.stub.Generate(req))
    return got.text


async def test_shadow_phase_mirrors_to_vllm_with_a_tagged_request_id(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0))
    text = await _generate(h, "abc", task=common_pb2.TASK_ANALYSIS)
    assert text == "Hello, world!"
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    # The primary went to Ollama; the shadow to vLLM, same logical model, tagged id.
    assert [s.path for s in h.ollama.seen] == ["/api/chat"]
    (seen,) = h.vllm.seen
    assert seen.headers["x-request-id"] == "abc-shadow"
    assert seen.body["model"] == "Qwen/Qwen3-8B"
    drained = h.app.recorder.drain()
    (pair,) = pairs(drained)
    assert (pair.request_id, pair.task, pair.model) == ("abc", "analysis", "qwen3:8b")
    assert (pair.primary_provider, pair.shadow_provider) == ("ollama", "vllm")
    assert pair.primary_ok
    assert pair.shadow_ok
    assert pair.shadow_error is None
    assert pair.text_similarity == 1.0
    assert pair.length_ratio == 1.0
    assert pair.primary_ttft_ms > 0
    assert pair.shadow_ttft_ms > 0
    assert pair.embedding_cosine is None
    # Content capture is off by default: no text leaves the router.
    assert (pair.prompt, pair.primary_text, pair.shadow_text) == ("", "", "")
    # The shadow request is recorded apart from the primary's.
    assert set(drained.aggregates) == {("ollama", "analysis", False), ("vllm", "analysis", True)}
    assert drained.aggregates[("vllm", "analysis", True)].requests == 1


async def test_nothing_is_mirrored_outside_shadow_or_when_not_sampled(h: Harness) -> None:
    await _generate(h, "facade")  # bootstrap config: FACADE, shadow off
    h.app.config.swap(shadow_config(0.0))
    await _generate(h, "unsampled")
    h.app.config.swap(from_snapshot(shadow_snapshot(1.0, phase=control_pb2.PHASE_SPLIT)))
    await _generate(h, "split-without-during-split")
    assert h.vllm.seen == []
    assert _mirror(h).counters.mirrored == 0


async def test_split_mirrors_only_with_shadow_during_split(h: Harness) -> None:
    snap = shadow_snapshot(1.0, phase=control_pb2.PHASE_SPLIT, during_split=True)
    h.app.config.swap(from_snapshot(snap))
    await _generate(h, "split-1", routing_key="k")
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    assert [s.headers["x-request-id"] for s in h.vllm.seen] == ["split-1-shadow"]


async def test_a_request_placed_on_the_shadow_engine_is_not_mirrored(h: Harness) -> None:
    snap = shadow_snapshot(
        1.0, phase=control_pb2.PHASE_SPLIT, during_split=True, vllm_percent=100.0
    )
    h.app.config.swap(from_snapshot(snap))
    await _generate(h, "on-vllm")
    assert len(h.vllm.seen) == 1  # the primary only
    assert _mirror(h).counters.skipped["same_provider"] == 1


async def test_a_model_the_shadow_engine_does_not_serve_is_skipped_and_counted(h: Harness) -> None:
    snap = shadow_snapshot(1.0)
    for m in snap.catalog.models:
        if m.name == "gemma3:4b":
            m.vllm_name = ""
    h.app.config.swap(from_snapshot(snap))
    await _generate(h, "reflect", task=common_pb2.TASK_REFLECTION)
    assert h.vllm.seen == []
    assert _mirror(h).counters.skipped["model_not_served"] == 1


async def test_capture_sends_the_last_user_message_and_both_answers(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0, capture=True))
    h.vllm.push(Script(tokens=["Hello", " there"]))
    messages = [
        router_pb2.Message(role=router_pb2.ROLE_USER, content="first question"),
        router_pb2.Message(role=router_pb2.ROLE_ASSISTANT, content="an answer"),
        router_pb2.Message(role=router_pb2.ROLE_USER, content="second question"),
    ]
    await _generate(h, "cap", messages=messages, system="be brief")
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (pair,) = pairs(h.app.recorder.drain())
    assert pair.prompt == "second question"
    assert pair.primary_text == "Hello, world!"
    assert pair.shadow_text == "Hello there"
    # {hello, world} vs {hello, there}: 1 shared of 3.
    assert pair.text_similarity == pytest.approx(1 / 3)
    assert pair.length_ratio == pytest.approx(11 / 13)
    # The shadow got the same conversation.
    assert h.vllm.seen[0].body["messages"] == h.ollama.seen[0].body["messages"]


async def test_embedding_cosine_through_the_routers_embed_path(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0, embeddings=True))
    await _generate(h, "emb")
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (pair,) = pairs(h.app.recorder.drain())
    # The fake engine embeds input i as [i + 1, 0, 0, 0]: parallel vectors.
    assert pair.embedding_cosine == pytest.approx(1.0)
    (embed,) = [s for s in h.ollama.seen if s.path == "/api/embed"]
    assert embed.body["model"] == "mxbai-embed-large"
    assert embed.body["input"] == ["Hello, world!", "Hello, world!"]
    assert embed.headers["x-request-id"] == "emb-shadow-embed"


async def test_a_failing_shadow_is_recorded_and_never_retried(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0))
    h.vllm.push(Script(status=503))
    assert await _generate(h, "s503") == "Hello, world!"
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    assert len(h.vllm.seen) == 1  # one attempt: a 503 is retryable for a primary, not here
    (pair,) = pairs(h.app.recorder.drain())
    assert pair.primary_ok
    assert not pair.shadow_ok
    assert pair.shadow_error is ErrorKind.LLM_UNAVAILABLE
    assert (pair.text_similarity, pair.length_ratio) == (0.0, 0.0)
    # The primary's own vLLM breaker saw nothing.
    assert h.app.servicer._dispatcher.breakers["vllm"].failures == 0


async def test_a_failed_primary_is_compared_with_its_shadow(h: Harness) -> None:
    snap = shadow_snapshot(1.0)
    snap.flags.fallback_provider = common_pb2.PROVIDER_UNSPECIFIED
    h.app.config.swap(from_snapshot(snap))
    h.ollama.push(Script(status=400, error_body={"error": "bad things"}))
    with pytest.raises(grpc.aio.AioRpcError):
        await _generate(h, "pfail")
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (pair,) = pairs(h.app.recorder.drain())
    assert not pair.primary_ok
    assert pair.shadow_ok


async def test_a_cancelled_primary_is_not_compared(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0))
    h.ollama.push(Script(hang_after=1))
    call = h.stub.Generate(router_pb2.GenerateRequest(request_id="gone", prompt="hi"))
    async for msg in call:
        if msg.HasField("delta"):
            break
    call.cancel()
    mirror = _mirror(h)
    await wait_mirror(mirror, lambda: mirror.counters.skipped["primary_cancelled"] == 1)
    assert pairs(h.app.recorder.drain()) == []


async def test_the_shadow_starts_after_the_primarys_first_delta(h: Harness) -> None:
    h.app.config.swap(shadow_config(1.0))
    h.ollama.push(Script(hang_after=0))  # the primary never sends a token
    call = h.stub.Generate(router_pb2.GenerateRequest(request_id="slowstart", prompt="hi"))
    await h.ollama.streaming.wait()
    mirror = _mirror(h)
    # Accepted (it holds a place in the bounds) but not started: nothing reached vLLM.
    assert (mirror.counters.mirrored, mirror.in_flight, mirror.running) == (1, 1, 0)
    assert h.vllm.seen == []
    call.cancel()
    await wait_mirror(mirror, lambda: mirror.counters.skipped["primary_cancelled"] == 1)
    # The caller went away before the first delta: the shadow never started.
    assert mirror.in_flight == 0
    assert h.vllm.seen == []
