"""Holds the config in force; a swap is one attribute assignment, so a request sees one whole
snapshot, never a mix."""

from __future__ import annotations

import asyncio

from router_service.config.routing import RoutingConfig


class ConfigHolder:
    def __init__(self, initial: RoutingConfig) -> None:
        self._current = initial
        self._swapped: asyncio.Event | None = None

    @property
    def current(self) -> RoutingConfig:
        return self._current

    def swap(self, config: RoutingConfig) -> RoutingConfig:
        previous, self._current = self._current, config
        if self._swapped is not None:
            # Wake every waiter, then the next one arms a fresh event.
            self._swapped.set()
            self._swapped = None
        return previous

    async def wait_version(self, version: int) -> None:
        """Wait until the config in force has ``version`` (for tools and tests)."""
        while self._current.version != version:
            if self._swapped is None:
                self._swapped = asyncio.Event()
            await self._swapped.wait()
