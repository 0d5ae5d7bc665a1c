"""Reads each replica's own load signals on an interval (never on the request path).

vLLM replicas: ``GET /metrics``; Ollama replicas: ``GET /api/ps``. A failed scrape keeps the
last signals (placement then leans on the router's in-flight counts) and says so at DEBUG: the
health probe, not the scrape, decides whether a replica is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import httpx
import orjson

from llmcore.engine_signals import EngineSignals, parse_ollama_ps, parse_vllm_metrics
from router_service.pools.pool import EnginePool
from router_service.pools.replica import Replica

log = logging.getLogger(__name__)

__all__ = ["SignalScraper", "scrape_replica"]


async def scrape_replica(engine: str, r: Replica, timeout_s: float = 1.0) -> bool:
    """One scrape of ``r``; True when it got signals."""
    if r.client is None:
        return False
    path = "/metrics" if engine == "vllm" else "/api/ps"
    try:
        resp = await r.client.get(path, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.debug("scrape %s%s failed: %s", r.id, path, type(exc).__name__)
        return False
    if resp.status_code != 200:
        log.debug("scrape %s%s: HTTP %d", r.id, path, resp.status_code)
        return False
    signals: EngineSignals
    if engine == "vllm":
        signals = parse_vllm_metrics(resp.text)
    else:
        try:
            signals = parse_ollama_ps(orjson.loads(resp.content))
        except orjson.JSONDecodeError:
            return False
    r.observe(signals)
    return True


class SignalScraper:
    """Scrapes every replica of ``pools`` every ``interval_s``."""

    def __init__(self, pools: Sequence[EnginePool], interval_s: float = 1.0) -> None:
        self._pools = pools
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def scrape_all(self) -> None:
        await asyncio.gather(
            *(scrape_replica(p.name, r) for p in self._pools for r in list(p.replicas.values()))
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.scrape_all()
            except Exception:  # the loop must never die
                log.exception("replica scrape failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="replica-scrape")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
