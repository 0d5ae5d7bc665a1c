"""Engine pools as the control service sees them (docs/pools.md): every replica it knows (its
own settings and ``flags.replicas``), probed and scraped on demand for ``ListEngines``, with
the routers' per-replica evidence from their stats reports; and the drain flag change.

The rollback rules stay per engine (the pool is the engine: healthy while one replica is);
what is here is the per-replica evidence an operator reads before draining one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import httpx
import orjson

from clients.gen.llmgateway.v1 import control_pb2
from control_service.convert import PROVIDER_FROM_PROTO, PROVIDER_TO_PROTO
from control_service.state import Flags
from llmcore.engine_signals import EngineSignals, parse_ollama_ps, parse_vllm_metrics
from llmcore.vocabulary import ProviderName

__all__ = ["EngineDirectory", "ReplicaEvidenceBook", "probe_url", "with_drained"]

# A router's report older than this no longer counts as evidence (the router is gone).
EVIDENCE_TTL_S = 300.0
# Bounds on what one router's report may make the service hold.
MAX_REPLICAS_PER_ROUTER = 256
MAX_URL_CHARS = 512


def probe_url(engine: str, base_url: str) -> str:
    """Liveness endpoint: Ollama ``GET /``, vLLM ``GET /health``."""
    return base_url.rstrip("/") + ("/" if engine == "ollama" else "/health")


def with_drained(flags: Flags, url: str, drain: bool) -> Flags:
    """``flags`` with ``url`` added to (or removed from) ``drained_replicas``."""
    url = url.rstrip("/")
    rest = tuple(u for u in flags.drained_replicas if u != url)
    return replace(flags, drained_replicas=(*rest, url) if drain else rest)


@dataclass(frozen=True, slots=True)
class _Seen:
    at: float
    reports: tuple[control_pb2.ReplicaReport, ...]


class ReplicaEvidenceBook:
    """The latest per-replica counts of each router (they are cumulative per router)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_router: dict[str, _Seen] = {}

    def add(self, router_id: str, reports: Iterable[control_pb2.ReplicaReport]) -> None:
        kept = tuple(r for r in reports if 0 < len(r.url) <= MAX_URL_CHARS)
        self._by_router[router_id] = _Seen(self._clock(), kept[:MAX_REPLICAS_PER_ROUTER])

    def evidence(self) -> dict[str, control_pb2.ReplicaEvidence]:
        """Per replica URL, summed over the routers that reported it recently."""
        now = self._clock()
        out: dict[str, control_pb2.ReplicaEvidence] = {}
        for router_id, seen in list(self._by_router.items()):
            if now - seen.at > EVIDENCE_TTL_S:
                del self._by_router[router_id]
                continue
            for r in seen.reports:
                e = out.setdefault(r.url, control_pb2.ReplicaEvidence())
                e.attempts += r.attempts
                e.successes += r.successes
                e.failures += r.failures
                e.timeouts += r.timeouts
                e.routers += 1
                e.open_breakers += r.breaker_state == "open"
                e.in_flight += r.in_flight
        return out

    def reported(self) -> list[tuple[ProviderName, str]]:
        """Replicas routers reported that the service has no list of (DNS, routers' own)."""
        out: list[tuple[ProviderName, str]] = []
        for seen in self._by_router.values():
            for r in seen.reports:
                provider = PROVIDER_FROM_PROTO.get(r.provider)
                if provider is not None and (provider, r.url) not in out:
                    out.append((provider, r.url))
        return out


@dataclass(frozen=True, slots=True)
class _Probe:
    healthy: bool
    detail: str
    latency_ms: float
    signals: EngineSignals | None


class EngineDirectory:
    def __init__(
        self,
        client: httpx.AsyncClient,
        static: Mapping[ProviderName, Sequence[str]],
        flags: Callable[[], Flags],
        evidence: ReplicaEvidenceBook,
        timeout_s: float = 0.5,
    ) -> None:
        self._client = client
        self._static = static
        self._flags = flags
        self.evidence = evidence
        self._timeout_s = timeout_s

    def known(self) -> list[tuple[ProviderName, str, str]]:
        """(engine, url, source) of every replica: settings, then flags, then router reports."""
        out: list[tuple[ProviderName, str, str]] = []
        seen: set[tuple[str, str]] = set()

        def add(engine: ProviderName, url: str, source: str) -> None:
            if (engine, url) not in seen:
                seen.add((engine, url))
                out.append((engine, url, source))

        for engine, urls in self._static.items():
            for url in urls:
                add(engine, url, "settings")
        for r in self._flags().replicas:
            add(r.provider, r.url, "flags")
        for engine, url in self.evidence.reported():
            add(engine, url, "routers")
        return out

    def probe_targets(self) -> dict[str, list[str]]:
        """Engine -> the liveness URLs of its replicas (for the health prober)."""
        out: dict[str, list[str]] = {}
        for engine, url, _ in self.known():
            out.setdefault(engine, []).append(probe_url(engine, url))
        return out

    async def _probe(self, engine: str, url: str) -> _Probe:
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await self._client.get(probe_url(engine, url), timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            return _Probe(False, f"no answer within {self._timeout_s:g}s", self._ms(t0), None)
        except httpx.HTTPError as exc:
            return _Probe(False, f"unreachable ({type(exc).__name__})", self._ms(t0), None)
        ms = self._ms(t0)
        if not 200 <= resp.status_code < 300:
            return _Probe(False, f"HTTP {resp.status_code}", ms, None)
        return _Probe(True, "", ms, await self._scrape(engine, url))

    async def _scrape(self, engine: str, url: str) -> EngineSignals | None:
        path = "/metrics" if engine == "vllm" else "/api/ps"
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await self._client.get(url + path, timeout=self._timeout_s)
        except (TimeoutError, httpx.HTTPError):
            return None
        if resp.status_code != 200:
            return None
        if engine == "vllm":
            return parse_vllm_metrics(resp.text)
        try:
            return parse_ollama_ps(orjson.loads(resp.content))
        except orjson.JSONDecodeError:
            return None

    @staticmethod
    def _ms(t0: float) -> float:
        return (time.perf_counter() - t0) * 1000

    async def list(self) -> control_pb2.ListEnginesResponse:
        known = sorted(self.known(), key=lambda k: (k[0], k[1]))
        probes = await asyncio.gather(*(self._probe(e, u) for e, u, _ in known))
        drained = set(self._flags().drained_replicas)
        evidence = self.evidence.evidence()
        out = control_pb2.ListEnginesResponse()
        for (engine, url, source), p in zip(known, probes, strict=True):
            s = p.signals or EngineSignals()
            status = control_pb2.ReplicaStatus(
                provider=PROVIDER_TO_PROTO[engine],
                url=url,
                source=source,
                healthy=p.healthy,
                detail=p.detail,
                latency_ms=p.latency_ms,
                draining=url in drained,
                running=s.running,
                waiting=s.waiting,
                kv_cache_usage=s.kv_usage,
                loaded_models=list(s.loaded_models),
            )
            if s.prefix_queries > 0:
                status.prefix_cache_hit_rate = s.prefix_hits / s.prefix_queries
            if url in evidence:
                status.evidence.CopyFrom(evidence[url])
            out.replicas.append(status)
        return out
