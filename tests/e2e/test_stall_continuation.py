"""The issue's scenario end to end: SPLIT 70, vLLM sends its first token and then stalls while
its /health stays green, memOS calls carry a 4 s deadline. Simulators on port 0, one real
router, the real control service evaluating the rules every 50 ms.

- The automatic rollback lands (the router runs the aborted config) within 5 s of vLLM's third
  consecutive timeout.
- With continuation on, the users in that window see no error: their streams finish on Ollama.
- With it off, only the calls already streaming from vLLM fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from clients.llm import Provider, RouterClient, RouterError
from llmcore.vocabulary import TaskName
from router_service.lifecycle import AttemptOutcome
from tests.e2e.test_rollback import Fleet, fleet_factory  # noqa: F401 (the fixture)

MEMOS_DEADLINE_S = 4.0


@dataclass
class Call:
    started: float
    first: Provider | None  # the engine that started the stream
    error: RouterError | None = None
    continued: bool = False


@dataclass
class Users:
    client: RouterClient
    calls: list[Call] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, n: int) -> None:
        self._tasks = [asyncio.create_task(self._run(w)) for w in range(n)]

    async def _run(self, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.monotonic()
            stream = self.client.generate("hello there", routing_key=f"u{worker}-{i}", max_tokens=8)
            try:
                result = await stream.collect()
            except RouterError as err:
                self.calls.append(
                    Call(started, stream.start.provider if stream.start else None, err)
                )
            else:
                first = stream.start.provider if stream.start else None
                self.calls.append(Call(started, first, continued=result.continued))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


@pytest.mark.parametrize("continuation", [True, False], ids=["continuation-on", "continuation-off"])
async def test_stall_after_the_first_token_rolls_back_and_continuation_hides_it(
    fleet_factory: Callable[..., Any],  # noqa: F811
    continuation: bool,
) -> None:
    fleet: Fleet = await fleet_factory(
        routers=1,
        router={"vllm_idle_timeout_s": 0.5, "continuation_enabled": continuation},
        timeout_routers_required=1,
        # Only the timeout rule may fire (a timeout is an error too).
        latency_p95_ms=60_000,
        error_rate=1.0,
    )
    router = fleet.routers[0]
    third: list[float] = []

    def observe(task: TaskName, outcome: AttemptOutcome) -> None:
        if not third and router.recorder.consecutive_timeouts("vllm") >= 3:
            third.append(time.monotonic())

    router.recorder.outcome_observers.append(observe)
    await fleet.split(70)
    users = Users(RouterClient(f"127.0.0.1:{router.port}", timeout=MEMOS_DEADLINE_S))
    users.start(8)
    fault_at = time.monotonic()
    fleet.vllm.faults.stall_after_tokens = 1  # /health stays 200
    try:
        await fleet.rolled_back(within=15)
        landed = time.monotonic()
    finally:
        await users.stop()
        await users.client.close()
    assert third, "vLLM never had three consecutive timeouts"
    assert landed - third[0] <= 5.0, f"rollback landed {landed - third[0]:.2f}s after the third"
    window = [c for c in users.calls if fault_at <= c.started <= landed]
    on_vllm = [c for c in window if c.first is Provider.VLLM]
    assert on_vllm, "no call reached vLLM during the stall"
    failed = [c for c in window if c.error is not None]
    if continuation:
        assert failed == [], [str(c.error) for c in failed]
        assert all(c.continued for c in on_vllm)  # each stalled stream finished on Ollama
    else:
        # Only the calls already streaming from vLLM fail, with vLLM's timeout after its text.
        assert failed
        for c in failed:
            assert c.first is Provider.VLLM
            assert c.error is not None
            assert c.error.partial_text
            assert c.error.memos_code == "ERR_5002"
        assert all(c.error is None for c in window if c.first is not Provider.VLLM)
    event = (await fleet.events(1))[0]
    assert event.action == "rollback"
    assert event.reason.startswith("automatic rollback: consecutive_timeouts: ")
