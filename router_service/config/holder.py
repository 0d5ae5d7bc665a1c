"""Holds the config in force; a swap is one attribute assignment, so a request sees one whole
snapshot, never a mix."""

from __future__ import annotations

from router_service.config.routing import RoutingConfig


class ConfigHolder:
    def __init__(self, initial: RoutingConfig) -> None:
        self._current = initial

    @property
    def current(self) -> RoutingConfig:
        return self._current

    def swap(self, config: RoutingConfig) -> RoutingConfig:
        previous, self._current = self._current, config
        return previous
