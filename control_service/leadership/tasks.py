"""Background tasks of the HA parts: cancelled together, each awaited to its end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence


async def cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
