"""The one way tests wait for a condition that has no change notification to wait on.

Where the code under test offers one (``ConfigHolder.wait_version``, ``Hub.wait_for``,
``ConfigSubscriber.wait_state``, ``ShadowMirror.wait_for``), use it. Where it does not (a
simulator's counters, another process, Prometheus), these poll the predicate at a short interval
and fail the test, naming what was awaited, after ``within`` seconds: a bounded condition wait,
never a fixed sleep standing in for synchronisation.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]],
    within: float = 5.0,
    *,
    what: str = "condition",
    interval: float = 0.002,
) -> None:
    """Return once ``predicate()`` (a plain or an async function) is true."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], bool],
    within: float = 5.0,
    *,
    what: str = "condition",
    interval: float = 0.1,
) -> None:
    """:func:`wait_for` for tests without an event loop (processes, subprocess output)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(interval)
