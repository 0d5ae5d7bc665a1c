"""Holds the config in force; a swap is one attribute assignment, so a request sees one whole
snapshot, never a mix."""

from __future__ import annotations

from llmcore.notify import ChangeNotifier
from router_service.config.routing import RoutingConfig


class ConfigHolder:
    def __init__(self, initial: RoutingConfig) -> None:
        self._current = initial
        self._swapped = ChangeNotifier()

    @property
    def current(self) -> RoutingConfig:
        return self._current

    def swap(self, config: RoutingConfig) -> RoutingConfig:
        previous, self._current = self._current, config
        self._swapped.notify()
        return previous

    async def next_change(self, version: int) -> RoutingConfig:
        """The config in force once it is no longer ``version`` (for whatever follows it)."""
        await self._swapped.wait_for(lambda: self._current.version != version)
        return self._current

    async def wait_version(self, version: int) -> None:
        """Wait until the config in force has ``version`` (for tools and tests)."""
        await self._swapped.wait_for(lambda: self._current.version == version)
