"""Shadow mode against the simulators over real HTTP: a slow, failing or hung shadow engine
never changes the primary's answer or latency, and its outcome is recorded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.errors import ErrorKind
from router_service.shadow import ShadowMirror
from tests._wait import wait_for
from tests.router.conftest import make_settings
from tests.router.shadow_support import p50, pairs, shadow_config, wait_mirror

# The primary's p50 with shadowing may exceed the no-shadow baseline by at most this much.
TOLERANCE_MS = 5.0
N = 20


@dataclass
class Stack:
    app: RouterApp
    ollama: RunningSimulator
    vllm: RunningSimulator
    channel: grpc.aio.Channel
    stub: router_pb2_grpc.RouterServiceAsyncStub

    @property
    def mirror(self) -> ShadowMirror:
        assert self.app.shadow is not None
        return self.app.shadow


async def start_stack(**settings: Any) -> Stack:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA))
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM))
    base: dict[str, Any] = {
        "ollama_base_url": ollama.base_url,
        "vllm_base_url": vllm.base_url,
        "shadow_timeout_s": 0.5,
        "shadow_max_concurrency": 32,
        # Every failed shadow is attempted (the shadow's own breaker would otherwise open and
        # turn the later ones into instant refusals; that it is separate is tested elsewhere).
        "breaker_failure_threshold": 1000,
    }
    base.update(settings)
    app = await start_router(make_settings(**base))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return Stack(app, ollama, vllm, channel, router_pb2_grpc.RouterServiceStub(channel))


async def stop_stack(s: Stack) -> None:
    await s.channel.close()
    await s.app.stop(0)
    await s.ollama.stop()
    await s.vllm.stop()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await start_stack()
    yield s
    await stop_stack(s)


@dataclass
class Answer:
    text: str
    ttft_ms: float
    total_ms: float


async def ask(s: Stack, rid: str, prompt: str) -> Answer:
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    call = s.stub.Generate(router_pb2.GenerateRequest(request_id=rid, prompt=prompt))
    async for msg in call:
        if msg.HasField("delta"):
            if ttft is None:
                ttft = time.perf_counter() - t0
            parts.append(msg.delta.text)
    total = time.perf_counter() - t0
    assert ttft is not None
    return Answer("".join(parts), ttft * 1000, total * 1000)


def _prompt(i: int) -> str:
    return f"question number {i} about graphs"


async def run_block(s: Stack, label: str) -> list[Answer]:
    return [await ask(s, f"{label}-{i}", _prompt(i)) for i in range(N)]


async def interleaved(s: Stack) -> tuple[list[Answer], list[Answer]]:
    """N requests without a shadow and the same N prompts with one, alternating (the order flips
    every pair), so drift and other load on the machine hit both sides alike."""
    modes = {"base": shadow_config(0.0), "shadowed": shadow_config(1.0)}  # SHADOW phase both
    out: dict[str, list[Answer]] = {"base": [], "shadowed": []}
    for i in range(N):
        for mode in ("base", "shadowed") if i % 2 == 0 else ("shadowed", "base"):
            s.app.config.swap(modes[mode])
            out[mode].append(await ask(s, f"{mode}-{i}", _prompt(i)))
    return out["base"], out["shadowed"]


async def sim_poll(predicate: Any, within: float = 5.0) -> None:
    # The simulator's counters have no change notification (tests/_wait.py).
    await wait_for(predicate, within, what="the simulator's counters")


FAULTS: dict[str, tuple[dict[str, Any], ErrorKind]] = {
    "slow": ({"added_latency_ms": 3000.0}, ErrorKind.LLM_TIMEOUT),
    "failing": ({"error_rate": 1.0}, ErrorKind.LLM_UNAVAILABLE),
    "hung-mid-stream": ({"stall_after_tokens": 0}, ErrorKind.LLM_TIMEOUT),
    "hung-first-token": ({"slow_first_token_ms": 600_000.0}, ErrorKind.LLM_TIMEOUT),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_bad_shadow_leaves_the_primary_identical_and_as_fast(
    stack: Stack, fault: str
) -> None:
    changes, expected_error = FAULTS[fault]
    stack.vllm.faults.update(changes)
    stack.app.config.swap(shadow_config(0.0))  # SHADOW phase, nothing sampled
    await run_block(stack, "warm")
    baseline, shadowed = await interleaved(stack)

    assert [a.text for a in shadowed] == [a.text for a in baseline]  # byte-identical
    assert all(a.text for a in shadowed)
    base_ttft, shadow_ttft = p50([a.ttft_ms for a in baseline]), p50([a.ttft_ms for a in shadowed])
    base_total, shadow_total = (
        p50([a.total_ms for a in baseline]),
        p50([a.total_ms for a in shadowed]),
    )
    assert shadow_ttft <= base_ttft + TOLERANCE_MS, (base_ttft, shadow_ttft)
    assert shadow_total <= base_total + TOLERANCE_MS, (base_total, shadow_total)

    mirror = stack.mirror
    await wait_mirror(mirror, lambda: mirror.counters.compared == N)
    drained = stack.app.recorder.drain()
    got = pairs(drained)
    assert sorted(p.request_id for p in got) == sorted(f"shadowed-{i}" for i in range(N))
    assert all(p.primary_ok and not p.shadow_ok for p in got)
    assert {p.shadow_error for p in got} == {expected_error}
    shadow_stats = drained.aggregates[("vllm", "analysis", True)]
    assert (shadow_stats.requests, shadow_stats.errors) == (N, N)
    assert stack.vllm.stats.requests_total == N  # the shadows only, one attempt each
    # The primary's own figures hold the primary only, and none failed.
    primary_stats = drained.aggregates[("ollama", "analysis", False)]
    assert primary_stats.requests == 3 * N
    assert primary_stats.errors == 0


async def test_a_healthy_shadow_is_compared(stack: Stack) -> None:
    stack.app.config.swap(shadow_config(1.0))
    answers = await run_block(stack, "ok")
    mirror = stack.mirror
    await wait_mirror(mirror, lambda: mirror.counters.compared == N)
    got = pairs(stack.app.recorder.drain())
    assert len(got) == N
    for p in got:
        assert p.primary_ok
        assert p.shadow_ok
        assert 0.0 <= p.text_similarity <= 1.0
        assert p.length_ratio > 0
        assert p.shadow_ttft_ms > 0
        assert p.shadow_tokens_per_second > 0
        assert p.primary_tokens_per_second > 0
    assert all(a.text for a in answers)
    # Both engines were asked about the same model under their own names.
    entries = stack.vllm.context.log.entries()
    assert {e["model"] for e in entries} == {"Qwen/Qwen3-8B"}
    assert sorted(e["x_request_id"] for e in entries) == sorted(f"ok-{i}-shadow" for i in range(N))


async def test_full_queue_drops_and_counts_and_shutdown_cancels_the_shadows() -> None:
    s = await start_stack(shadow_max_concurrency=1, shadow_queue_size=1, shadow_timeout_s=60)
    try:
        s.app.config.swap(shadow_config(0.0))
        baseline = [await ask(s, f"b{i}", f"prompt {i}") for i in range(6)]
        s.vllm.faults.stall_after_tokens = 0  # every shadow hangs
        s.app.config.swap(shadow_config(1.0))
        answers = [await ask(s, f"s{i}", f"prompt {i}") for i in range(6)]
        assert [a.text for a in answers] == [a.text for a in baseline]
        mirror = s.mirror
        # One running, one waiting for the slot, four dropped.
        assert (mirror.running, mirror.in_flight, mirror.counters.dropped) == (1, 2, 4)
        drained = s.app.recorder.drain()
        assert drained.shadow_dropped == 4
        assert sorted(r.request_id for r in drained.shadow_comparisons if r.dropped) == [
            "s2",
            "s3",
            "s4",
            "s5",
        ]
        await sim_poll(lambda: s.vllm.stats.running == 1)
    finally:
        await s.channel.close()
        await s.app.stop(0)
    try:
        # Stopping the router cancelled the hung shadow: its stream closed, the engine aborted.
        assert s.mirror.in_flight == 0
        await sim_poll(lambda: s.vllm.stats.aborted_total == 1 and s.vllm.stats.running == 0)
        assert s.vllm.stats.requests_total == 1  # the queued one never started
    finally:
        await s.ollama.stop()
        await s.vllm.stop()
