"""Admission control: a fixed number of seats (Ollama slots / vLLM batch seats) and a FIFO queue.

A released seat is handed straight to the oldest waiter, so order is strictly first come, first
served and ``running`` never dips while someone waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Admission", "QueueFull"]


class QueueFull(Exception):
    """The queue limit was reached; the engine answers 503."""


class Admission:
    """Seats plus a FIFO queue. ``queue_room`` decides whether one more may wait."""

    __slots__ = ("_waiters", "capacity", "queue_room", "running")

    def __init__(self, capacity: int, queue_room: Callable[[], bool] | None = None) -> None:
        self.capacity = capacity
        self.running = 0
        self.queue_room = queue_room
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.running < self.capacity and not self._waiters:
            self.running += 1
            return
        if self.queue_room is not None and not self.queue_room():
            raise QueueFull
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The seat was handed over just as we were cancelled: pass it on.
                self.release()
            elif fut in self._waiters:  # release() may already have dropped it
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # seat moves to the waiter; running is unchanged
                return
        self.running -= 1
