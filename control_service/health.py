"""Aggregate health: the store (a timed trivial query), every router (connected, synced or
behind) and each engine (Ollama ``GET /``, vLLM ``GET /health``).

Engine probes share one ``httpx.AsyncClient``, run concurrently with a short timeout, are cached
for ``cache_s`` and single-flighted (concurrent checks share one probe round), so a health call
stays fast with a hundred routers and a hanging engine. An engine that carries no traffic in the
current state (vLLM before SHADOW, while aborted) is reported at most DEGRADED.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import httpx

from control_service.hub import Hub, RouterView
from control_service.state import DesiredState, Phase, RolloutStatus
from control_service.store import StateStore


class Health(enum.IntEnum):
    """Ordered: the aggregate is the worst (largest)."""

    OK = 1
    DEGRADED = 2
    DOWN = 3


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    name: str
    status: Health
    detail: str = ""
    latency_ms: float = 0.0


def vllm_in_use(state: DesiredState) -> bool:
    """Whether vLLM answers or receives mirrored traffic in ``state``."""
    m, f = state.migration, state.flags
    if m.status is RolloutStatus.ABORTED:
        return False
    if m.vllm_traffic_percent > 0 or f.primary_provider == "vllm":
        return True
    pinned = (f.synthesis_provider, f.analysis_provider, f.classification_provider)
    if "vllm" in (*pinned, f.embedding_provider):
        return True
    return (
        m.phase in (Phase.SHADOW, Phase.SPLIT) and f.shadow_enabled and f.shadow_provider == "vllm"
    )


class EngineProber:
    def __init__(
        self,
        client: httpx.AsyncClient,
        urls: Mapping[str, str],
        timeout_s: float = 0.3,
        cache_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        replicas: Callable[[], Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self._client = client
        self._urls = dict(urls)
        # Engine pools (docs/pools.md): more liveness URLs per engine, read at each round.
        self._replicas = replicas
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._cached: tuple[float, list[ComponentHealth]] | None = None
        self._inflight: asyncio.Task[list[ComponentHealth]] | None = None

    async def check(self) -> list[ComponentHealth]:
        if self._cached and self._clock() - self._cached[0] < self._cache_s:
            return self._cached[1]
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._probe_all())
        # shield: a cancelled health call must not cancel the probe others wait on.
        return await asyncio.shield(self._inflight)

    async def probe_now(self) -> list[ComponentHealth]:
        """A fresh probe round whatever the cache holds (joining one in flight); the rollback
        loop counts these for its health hysteresis. Refreshes the cache too."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._probe_all())
        return await asyncio.shield(self._inflight)

    async def _probe_all(self) -> list[ComponentHealth]:
        targets = {name: [url] for name, url in self._urls.items()}
        for name, urls in (self._replicas() if self._replicas else {}).items():
            listed = targets.setdefault(name, [])
            listed.extend(u for u in urls if u not in listed)
        results = list(
            await asyncio.gather(*(self._probe_pool(n, urls) for n, urls in targets.items()))
        )
        self._cached = (self._clock(), results)
        return results

    async def _probe_pool(self, name: str, urls: Sequence[str]) -> ComponentHealth:
        """An engine of several replicas is up while one is (the rollback rules judge the
        engine); the down ones are named in the detail."""
        if len(urls) == 1:
            return await self._probe(name, urls[0])
        parts = await asyncio.gather(*(self._probe(name, u) for u in urls))
        up = [p for p in parts if p.status is Health.OK]
        down = "; ".join(p.detail for p in parts if p.status is not Health.OK)
        if not up:
            return ComponentHealth(
                f"engine/{name}", Health.DOWN, down, max(p.latency_ms for p in parts)
            )
        detail = f"{len(parts) - len(up)} of {len(parts)} replicas down: {down}" if down else ""
        return ComponentHealth(f"engine/{name}", Health.OK, detail, min(p.latency_ms for p in up))

    async def _probe(self, name: str, url: str) -> ComponentHealth:
        t0 = time.perf_counter()
        try:
            # asyncio.timeout bounds the probe whatever the transport does with httpx's timeout.
            async with asyncio.timeout(self._timeout_s):
                resp = await self._client.get(url, timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            status, detail = Health.DOWN, f"no answer within {self._timeout_s:g}s from {url}"
        except httpx.HTTPError as exc:
            status, detail = Health.DOWN, f"unreachable ({type(exc).__name__}) at {url}"
        else:
            ok = 200 <= resp.status_code < 300
            status = Health.OK if ok else Health.DOWN
            detail = "" if ok else f"HTTP {resp.status_code} from {url}"
        ms = (time.perf_counter() - t0) * 1000
        return ComponentHealth(f"engine/{name}", status, detail, ms)

    async def aclose(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            await asyncio.wait([self._inflight])


class HealthAggregator:
    def __init__(
        self,
        store: StateStore,
        hub: Hub,
        current_state: Callable[[], tuple[int, DesiredState]],
        prober: EngineProber,
        store_timeout_s: float = 0.3,
        store_slow_ms: float = 100.0,
        extra: Callable[[], list[ComponentHealth]] | None = None,
    ) -> None:
        self._store = store
        # More components of this process (HA: the replica's leadership).
        self._extra = extra
        self._hub = hub
        self._current = current_state
        self._prober = prober
        self._store_timeout_s = store_timeout_s
        self._store_slow_ms = store_slow_ms

    async def _store_health(self) -> ComponentHealth:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self._store_timeout_s):
                await self._store.ping()
        except TimeoutError:
            ms = (time.perf_counter() - t0) * 1000
            return ComponentHealth(
                "store", Health.DOWN, f"no answer within {self._store_timeout_s:g}s", ms
            )
        except Exception as exc:  # noqa: BLE001 - any store failure is a health finding
            ms = (time.perf_counter() - t0) * 1000
            return ComponentHealth("store", Health.DOWN, f"{type(exc).__name__}: {exc}", ms)
        ms = (time.perf_counter() - t0) * 1000
        if ms > self._store_slow_ms:
            return ComponentHealth("store", Health.DEGRADED, f"slow: {ms:.0f} ms", ms)
        return ComponentHealth("store", Health.OK, "", ms)

    def _routers(self, version: int) -> list[ComponentHealth]:
        out = []
        for r in self._hub.routers():
            view = r.view(version)
            name = f"router/{r.router_id}"
            if view is RouterView.SYNCED:
                out.append(ComponentHealth(name, Health.OK))
            elif view is RouterView.BEHIND:
                detail = f"applied v{r.applied_version}, current v{version}"
                out.append(ComponentHealth(name, Health.DEGRADED, detail))
            elif view is RouterView.REFUSED:
                detail = f"refused v{version}: {r.last_nack_reason}"
                out.append(ComponentHealth(name, Health.DEGRADED, detail))
            else:
                out.append(ComponentHealth(name, Health.DEGRADED, "disconnected"))
        return out

    async def check(self) -> tuple[Health, list[ComponentHealth]]:
        store, engines = await asyncio.gather(self._store_health(), self._prober.check())
        version, state = self._current()
        components = [store]
        for e in engines:
            if e.name == "engine/vllm" and e.status is Health.DOWN and not vllm_in_use(state):
                e = replace(e, status=Health.DEGRADED, detail=f"{e.detail} (carries no traffic)")
            components.append(e)
        if self._extra is not None:
            components.extend(self._extra())
        components.extend(self._routers(version))
        return max(c.status for c in components), components
