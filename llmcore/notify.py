"""One change notifier: "something changed, re-check your condition" for any number of waiters.

The pattern the config holder, the config subscriber, the control hub and the GPU monitor each
had by hand: an ``asyncio.Event`` that is set to wake every current waiter and replaced by a
fresh one for the next change. Waiters never read a value from the notifier; they re-check their
own predicate, so a missed intermediate change cannot leave one waiting on stale state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ChangeNotifier:
    """Wakes every waiter on :meth:`notify`. Checking a condition and calling :meth:`wait` with
    no ``await`` in between cannot miss a change (asyncio runs one task at a time)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting now; later waiters wait for the next change."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self) -> None:
        """Return after the next :meth:`notify`."""
        await self._event.wait()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds, re-checked after every change. Bound it with
        ``asyncio.timeout``."""
        while not predicate():
            await self._event.wait()
