"""The process loop of a service's ``main``: print the ready line, wait for SIGTERM or SIGINT,
then run the service's stop (which drains: health NOT_SERVING, no new calls, a grace period)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_until_signalled(
    stop: Callable[[], Awaitable[None]],
    ready_line: str,
    drain_note: str,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """``ready_line`` goes to stdout (tools and tests wait for it); on the first of ``signals``,
    ``drain_note`` is logged and ``stop()`` awaited."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    try:
        print(ready_line, flush=True)
        await stopping.wait()
        log.info("shutting down: %s", drain_note)
        await stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
