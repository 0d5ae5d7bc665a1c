"""Circuit breaker: transitions in isolation, then inside the router."""

from __future__ import annotations

from clients.gen.llmgateway.v1 import common_pb2, router_pb2
from router_service.breaker import Breaker, BreakerPolicy, BreakerState
from tests.router.conftest import start_harness
from tests.router.fake_engine import Script
from tests.router.helpers import collect


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_recovers_through_half_open() -> None:
    clock = Clock()
    b = Breaker(BreakerPolicy(failure_threshold=3, open_s=5, half_open_probes=1), clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.allow()
    b.success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert _state(b) is BreakerState.OPEN
    assert not b.allow()
    clock.now += 4.9
    assert not b.allow()
    clock.now += 0.2
    assert b.allow()  # the probe
    assert _state(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # only one probe at a time
    b.failure()
    assert _state(b) is BreakerState.OPEN
    clock.now += 5.1
    assert b.allow()
    b.success()
    assert _state(b) is BreakerState.CLOSED
    assert [t[1] for t in b.transitions] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_cancelled_probe_frees_its_slot() -> None:
    clock = Clock()
    b = Breaker(BreakerPolicy(failure_threshold=1, open_s=1), clock)
    b.allow()
    b.failure()
    clock.now += 2
    assert b.allow()
    b.release()
    assert b.allow()


async def test_open_breaker_skips_the_dead_engine() -> None:
    h = await start_harness(
        breaker_failure_threshold=2, breaker_open_s=60, retry_attempts=1, primary_provider="vllm",
        fallback_provider="ollama",
    )  # fmt: skip
    try:
        h.vllm.default = Script(status=503)
        for _ in range(2):
            got = await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
            assert got.start.provider == common_pb2.PROVIDER_OLLAMA
        assert len(h.vllm.seen) == 2
        # Open: the next requests go straight to Ollama without touching vLLM.
        for _ in range(3):
            got = await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
            assert got.start.provider == common_pb2.PROVIDER_OLLAMA
            assert got.start.fallback
        assert len(h.vllm.seen) == 2
        status = await h.stub.GetStatus(router_pb2.GetStatusRequest())
        states = {e.provider: e.breaker_state for e in status.engines}
        assert states[common_pb2.PROVIDER_VLLM] == "open"
        assert states[common_pb2.PROVIDER_OLLAMA] == "closed"
    finally:
        await h.channel.close()
        await h.app.stop(0)


async def test_model_not_found_does_not_open_the_breaker() -> None:
    h = await start_harness(breaker_failure_threshold=1)
    try:
        h.ollama.push(Script(status=404))
        await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x")))
        status = await h.stub.GetStatus(router_pb2.GetStatusRequest())
        assert {e.breaker_state for e in status.engines} == {"closed"}
    finally:
        await h.channel.close()
        await h.app.stop(0)


def _state(b: Breaker) -> BreakerState:
    return b.state
