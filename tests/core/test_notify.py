"""llmcore.notify.ChangeNotifier: every waiter wakes on a change and re-checks its condition."""

from __future__ import annotations

import asyncio

import pytest

from llmcore.notify import ChangeNotifier


async def test_notify_wakes_every_waiter() -> None:
    notifier = ChangeNotifier()
    waiters = [asyncio.create_task(notifier.wait()) for _ in range(3)]
    await asyncio.sleep(0)  # all three are waiting
    assert not any(w.done() for w in waiters)
    notifier.notify()
    async with asyncio.timeout(1):
        await asyncio.gather(*waiters)


async def test_a_later_waiter_waits_for_the_next_change() -> None:
    notifier = ChangeNotifier()
    notifier.notify()  # nobody waiting: nothing is remembered
    late = asyncio.create_task(notifier.wait())
    await asyncio.sleep(0)
    assert not late.done()
    notifier.notify()
    async with asyncio.timeout(1):
        await late


async def test_wait_for_rechecks_the_predicate_on_each_change() -> None:
    notifier = ChangeNotifier()
    value = 0
    waiter = asyncio.create_task(notifier.wait_for(lambda: value >= 2))
    for _ in range(2):
        await asyncio.sleep(0)
        assert not waiter.done()
        value += 1
        notifier.notify()
    async with asyncio.timeout(1):
        await waiter
    # Already true: returns at once, no change needed.
    async with asyncio.timeout(1):
        await notifier.wait_for(lambda: True)


async def test_wait_for_is_bounded_by_the_callers_timeout() -> None:
    notifier = ChangeNotifier()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await notifier.wait_for(lambda: False)
