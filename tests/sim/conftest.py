"""Fixtures for the simulator tests: real simulators on port 0, and a bounded condition wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import httpx
import pytest

from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from tests._wait import wait_for as wait_until


class SimFactory(Protocol):
    def __call__(self, **kwargs: Any) -> Awaitable[RunningSimulator]: ...


class WaitFor(Protocol):
    def __call__(
        self, predicate: Callable[[], bool], within: float = ..., what: str = ...
    ) -> Awaitable[None]: ...


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start simulators with ``SimConfig(**kwargs)``; all are stopped after the test."""
    sims: list[RunningSimulator] = []

    async def factory(**kwargs: Any) -> RunningSimulator:
        sim = await start_simulator(SimConfig(**kwargs))
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def ollama_sim(make_sim: SimFactory) -> RunningSimulator:
    return await make_sim(flavor=Flavor.OLLAMA)


@pytest.fixture
async def vllm_sim(make_sim: SimFactory) -> RunningSimulator:
    return await make_sim(flavor=Flavor.VLLM)


@pytest.fixture
def wait_for() -> WaitFor:
    """Poll a condition until it holds, failing after ``within`` seconds."""

    async def _wait(
        predicate: Callable[[], bool], within: float = 5.0, what: str = "condition"
    ) -> None:
        # The simulator's counters have no change notification (tests/_wait.py).
        await wait_until(predicate, within, what=what)

    return _wait


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client
