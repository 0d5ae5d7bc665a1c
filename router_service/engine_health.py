"""Periodic liveness probes of each engine, cached for GetStatus (never on the request path)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from llmcore.vocabulary import ProviderName
from router_service.errors import RouterError
from router_service.providers import Provider

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Probe:
    healthy: bool
    detail: str
    latency_ms: float
    at: float  # time.monotonic()


class EngineHealth:
    def __init__(self, providers: Mapping[ProviderName, Provider], interval_s: float = 5.0) -> None:
        self._providers = providers
        self._interval = interval_s
        self.last: dict[ProviderName, Probe] = {}
        self._task: asyncio.Task[None] | None = None

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe(n, p) for n, p in self._providers.items()))

    async def _probe(self, name: ProviderName, provider: Provider) -> None:
        t0 = time.monotonic()
        try:
            await provider.probe()
        except RouterError as exc:
            probe = Probe(False, str(exc), (time.monotonic() - t0) * 1000, time.monotonic())
        else:
            probe = Probe(True, "", (time.monotonic() - t0) * 1000, time.monotonic())
        previous = self.last.get(name)
        state = "up" if probe.healthy else "down"
        # Every probe at DEBUG (one per engine every few seconds); at INFO only a change of state
        # and an engine that is down from the start.
        was_healthy = True if previous is None else previous.healthy
        if was_healthy != probe.healthy:
            log.info("engine %s is %s %s", name, state, probe.detail)
        else:
            log.debug(
                "engine %s probe: %s in %.1f ms %s", name, state, probe.latency_ms, probe.detail
            )
        self.last[name] = probe

    async def _loop(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:  # the probe loop must never die
                log.exception("engine probe failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="engine-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
