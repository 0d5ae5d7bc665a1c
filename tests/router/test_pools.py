"""Engine pools over real sockets: episode affinity, retry on another replica, a replica dying
mid-run, drain; what the caller gets and what the stats and breakers record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from clients.gen.llmgateway.v1 import common_pb2
from router_service.breaker import BreakerState
from router_service.errors import ErrorKind
from router_service.pools import Reason
from router_service.values import Route
from tests.router.fault_engine import ANSWER, Fault
from tests.router.pool_stack import PoolStack, start_pool_stack

FULL = "".join(ANSWER)


@pytest.fixture
async def stack() -> AsyncIterator[PoolStack]:
    s = await start_pool_stack(3)
    yield s
    await s.close()


def owner_index(stack: PoolStack, key: str) -> int:
    d = stack.pool.choose(Route(key))
    assert d.replica is not None
    return [e.base_url for e in stack.replicas].index(d.replica)


async def test_one_url_per_replica_from_the_static_list(stack: PoolStack) -> None:
    assert list(stack.pool.replicas) == [e.base_url for e in stack.replicas]
    assert all(r.source == "static" for r in stack.pool.replicas.values())
    assert stack.pool.base_url == ",".join(e.base_url for e in stack.replicas)


async def test_the_calls_of_one_episode_land_on_one_replica(stack: PoolStack) -> None:
    for _ in range(8):
        out = await stack.generate("query-1")
        assert out.text == FULL
    served = stack.served()
    assert sorted(served) == [0, 0, 8]
    assert served[owner_index(stack, "query-1")] == 8
    # Many episodes use every replica.
    for i in range(30):
        await stack.generate(f"query-x{i}")
    assert all(n > 0 for n in stack.served())
    assert stack.pool.reason_counts()["affinity"] == 38


async def test_a_retry_goes_to_another_replica_before_the_fallback_engine(
    stack: PoolStack,
) -> None:
    i = owner_index(stack, "k")
    stack.replicas[i].push(Fault("html502"))
    out = await stack.generate("k")
    assert out.text == FULL
    assert out.start.provider == common_pb2.PROVIDER_VLLM
    assert out.start.attempt == 2
    assert not out.start.fallback
    served = stack.served()
    assert served[i] == 1
    assert sum(served) == 2
    assert len(stack.ollama.bodies) == 0
    # Evidence on the replica; the engine (the pool) recovered on the retry.
    bad = stack.pool.replicas[stack.replicas[i].base_url]
    assert bad.stats.failures == 1
    assert bad.breaker.failures == 1
    others = [r for r in stack.pool.replicas.values() if r is not bad]
    assert sum(r.stats.successes for r in others) == 1
    dispatcher_breaker = stack.router.servicer._dispatcher.breakers["vllm"]
    assert dispatcher_breaker.state is BreakerState.CLOSED
    assert dispatcher_breaker.failures == 0
    assert stack.router.stats.retries["vllm"] == 1
    assert stack.router.stats.failures[("vllm", ErrorKind.LLM_UNAVAILABLE)] == 1


async def test_a_replica_dying_mid_run_moves_its_requests(stack: PoolStack) -> None:
    first = await asyncio.gather(*(stack.generate(f"q{i}") for i in range(12)))
    assert all(o.text == FULL for o in first)
    dead = stack.replicas[owner_index(stack, "q-dead")]
    replica = stack.pool.replicas[dead.base_url]
    answered = replica.stats.successes
    await dead.stop()
    before = len(dead.bodies)
    second = await asyncio.gather(*(stack.generate(f"q-dead-{i}") for i in range(20)))
    third = await stack.generate("q-dead")  # its own key: moved to a live replica
    # The caller never sees it: every answer complete, from vLLM, none from the fallback.
    for out in [*second, third]:
        assert out.text == FULL
        assert out.start.provider == common_pb2.PROVIDER_VLLM
        assert not out.start.fallback
    assert len(stack.ollama.bodies) == 0
    assert len(dead.bodies) == before  # nothing reached it
    assert not replica.healthy  # marked down at its first connect failure
    assert replica.stats.failures >= 1
    assert replica.stats.successes == answered == before  # its earlier answers are kept
    live = [r for r in stack.pool.replicas.values() if r is not replica]
    assert all(r.healthy and r.breaker.state is BreakerState.CLOSED for r in live)
    assert stack.router.servicer._dispatcher.breakers["vllm"].state is BreakerState.CLOSED
    d = stack.pool.choose(Route("q-dead"))
    assert d.replica != dead.base_url
    assert (dead.base_url, "unhealthy") in [(r, s.value) for r, s in d.skipped]


async def test_a_failing_replica_opens_its_own_breaker_only(stack: PoolStack) -> None:
    i = owner_index(stack, "k")
    stack.replicas[i].push(Fault("html502"), Fault("html502"))
    for _ in range(2):
        out = await stack.generate("k")
        assert out.text == FULL
        assert out.start.attempt == 2
    bad = stack.pool.replicas[stack.replicas[i].base_url]
    assert bad.breaker.state is BreakerState.OPEN  # threshold 2
    assert bad.healthy  # it answers, with errors: the breaker, not health, holds it off
    out = await stack.generate("k")
    assert out.start.attempt == 1  # placed elsewhere at once
    d = stack.pool.choose(Route("k"))
    assert d.reason is Reason.AFFINITY_SPILL
    assert (bad.id, "breaker_open") in [(r, s.value) for r, s in d.skipped]
    assert stack.router.servicer._dispatcher.breakers["vllm"].state is BreakerState.CLOSED


async def test_every_replica_out_falls_back_to_the_other_engine() -> None:
    s = await start_pool_stack(2)
    try:
        for e in s.replicas:
            await e.stop()
        out = await s.generate("k")
        assert out.text == FULL
        assert out.start.provider == common_pb2.PROVIDER_OLLAMA
        assert out.start.fallback
        assert all(not r.healthy for r in s.pool.replicas.values())
    finally:
        await s.close()


async def test_drain_sends_new_requests_elsewhere_and_lets_in_flight_ones_finish(
    stack: PoolStack,
) -> None:
    i = owner_index(stack, "k")
    owner = stack.replicas[i]
    owner.push(Fault("ok", itl_s=0.05))
    slow = asyncio.create_task(stack.generate("k"))
    await owner.wait_for(lambda: owner.active == 1)
    stack.pool.drain(owner.base_url)
    assert stack.pool.replicas[owner.base_url].in_flight == 1
    moved = await stack.generate("k")
    assert moved.text == FULL
    assert len(owner.bodies) == 1  # only the one in flight before the drain
    done = await slow
    assert done.text == FULL  # the in-flight stream finished on the drained replica
    assert stack.pool.replicas[owner.base_url].in_flight == 0
    d = stack.pool.choose(Route("k"))
    assert (owner.base_url, "draining") in [(r, s.value) for r, s in d.skipped]
    stack.pool.drain(owner.base_url, False)
    await stack.generate("k")
    assert len(owner.bodies) == 2  # undrained: its keys come back


async def test_a_first_token_timeout_counts_against_its_replica_and_moves_the_request() -> None:
    s = await start_pool_stack(3, vllm_first_token_timeout_s=0.3)
    try:
        i = owner_index(s, "k")
        s.replicas[i].push(Fault("hang"))
        out = await s.generate("k")
        assert out.text == FULL
        assert out.start.attempt == 2
        assert not out.start.fallback
        slow = s.pool.replicas[s.replicas[i].base_url]
        assert slow.stats.timeouts == 1
        assert slow.stats.failures == 1
        assert slow.breaker.failures == 1
        assert slow.in_flight == 0
        assert s.router.stats.failures[("vllm", ErrorKind.LLM_TIMEOUT)] == 1
        await s.replicas[i].wait_idle()  # the hung stream was closed at the engine
    finally:
        await s.close()
