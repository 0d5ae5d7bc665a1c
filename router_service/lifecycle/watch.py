"""Bounds the waits on one engine stream: first token, inter-token idle, and the deadline.

Why not ``asyncio.timeout`` around the stream: the dispatcher yields each chunk to the servicer
from inside the loop, and a timeout scope held across a ``yield`` cancels whatever the consumer
is awaiting (a slow client's write) instead of the engine read. Here only the wait on the engine
is bounded, and cheaply: a token is one float store; one timer per period re-arms itself lazily
(at most one timer callback per idle period, not one timer per token). Time the consumer spends
between two waits (a slow client) is added back: only the engine's silence counts.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import TypeVar

from router_service.lifecycle.timeouts import StreamTimeouts

T = TypeVar("T")


class Expired(enum.Enum):
    FIRST_TOKEN = "first_token"
    IDLE = "idle"
    DEADLINE = "deadline"


class StreamTimeout(Exception):
    """The wait on the engine passed one of its bounds."""

    def __init__(self, which: Expired, limit_s: float) -> None:
        super().__init__(f"{which.value} bound of {limit_s:g}s passed")
        self.which = which
        self.limit_s = limit_s


class StreamWatch:
    """One attempt's bounds. ``limits`` None: only ``deadline`` (``loop.time()`` based)."""

    def __init__(self, limits: StreamTimeouts | None, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._limits = limits
        self._deadline = deadline
        self._started = self._loop.time()
        self._first_due = self._started + limits.first_token_s if limits else deadline
        self._progress_due = self._first_due
        self._tokens = False
        self._handle: asyncio.TimerHandle | None = None
        self._waiting = False
        self._fired: Expired | None = None
        self._left: float | None = None  # when the last wait ended

    def progress(self) -> None:
        """The engine sent a token: the next one is due within the idle bound."""
        self._tokens = True
        if self._limits is not None:
            self._progress_due = self._loop.time() + self._limits.idle_s

    def _due(self) -> float:
        return min(self._deadline, self._progress_due)

    def _which(self, now: float) -> Expired | None:
        if now >= self._deadline:
            return Expired.DEADLINE
        if now >= self._progress_due:
            return Expired.IDLE if self._tokens else Expired.FIRST_TOKEN
        return None

    def _limit(self, which: Expired) -> float:
        if which is Expired.DEADLINE or self._limits is None:
            return self._deadline - self._started
        return self._limits.idle_s if which is Expired.IDLE else self._limits.first_token_s

    def _arm(self) -> None:
        due = self._due()
        if self._handle is not None:
            if self._handle.when() <= due:
                return  # fires early and re-arms itself
            self._handle.cancel()
        self._handle = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._handle = None
        if not self._waiting:
            return  # the next wait re-arms; time in the consumer is not the engine's
        which = self._which(self._loop.time())
        if which is None:
            self._arm()
            return
        self._fired = which
        self._task.cancel()

    async def next(self, step: Callable[[], Awaitable[T]]) -> T:
        """``await step()`` within the bounds; raises :class:`StreamTimeout` when one passes."""
        now = self._loop.time()
        if self._left is not None:  # the consumer's time (a slow client) is not the engine's
            self._progress_due += now - self._left
        which = self._which(now)
        if which is not None:
            raise StreamTimeout(which, self._limit(which))
        self._arm()
        cancelling = self._task.cancelling()
        self._waiting = True
        try:
            return await step()
        except asyncio.CancelledError:
            fired, self._fired = self._fired, None
            if fired is not None and self._task.uncancel() <= cancelling:
                raise StreamTimeout(fired, self._limit(fired)) from None
            raise
        finally:
            self._waiting = False
            self._left = self._loop.time()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
