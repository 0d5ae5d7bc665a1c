"""An engine pool: many replicas of one engine behind the ``Provider`` protocol.

Everything above a provider (placement plan, dispatcher, per-engine breaker, stats and the
rollback rules) sees one engine. Inside, each call is placed on a replica
(:mod:`router_service.pools.placement`), counted in its in-flight load, and its outcome judged
by that replica's breaker. A request's attempts share one ``Route``, so a retry goes to a
replica it has not tried yet; only when every replica is out does the pool refuse, which the
dispatcher treats as the engine being down (fallback engine).

A pool of one replica behaves as the bare engine did: health and breaker screening are left to
the engine-level probe and breaker, so nothing changes for a single-URL deployment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import httpx
from opentelemetry import trace

from llmcore.vocabulary import ProviderName
from router_service.breaker import COUNTED, Breaker, BreakerPolicy
from router_service.errors import ErrorKind, RouterError
from router_service.pools.placement import (
    DEFAULT_LOAD_FACTOR,
    Decision,
    HashRing,
    least_loaded,
    place,
    prefix_key,
    round_robin,
)
from router_service.pools.replica import Replica
from router_service.providers import Provider
from router_service.values import ChatCall, ChatChunk, ChatMessage, EmbedCall, EmbedOutput, Route

log = logging.getLogger(__name__)

__all__ = ["EnginePool", "PoolOptions", "ReplicaFactory"]

# Builds a replica's provider, and the HTTP client its signals are scraped with (None: no
# scrapes, in-flight counts only), from its base URL.
ReplicaFactory = Callable[[str], tuple[Provider, httpx.AsyncClient | None]]


Strategy = Literal["affinity", "least_loaded", "round_robin"]


@dataclass(frozen=True, slots=True)
class PoolOptions:
    # affinity: this module's placement; least_loaded and round_robin ignore the caches (the
    # baselines of bench/pool_placement.py).
    strategy: Strategy = "affinity"
    load_factor: float = DEFAULT_LOAD_FACTOR
    # Affinity on the shared prompt prefix when the caller sent no routing key.
    prefix_chars: int = 2048


def _leading_text(messages: tuple[ChatMessage, ...]) -> str:
    """The system prompt(s) and the first user turn: what calls sharing a prefix share."""
    parts: list[str] = []
    for m in messages:
        parts.append(m.content)
        if m.role != "system":
            break
    return "\x1e".join(parts)


class EnginePool:
    """A ``Provider`` over replicas of engine ``name``."""

    def __init__(
        self,
        name: ProviderName,
        factory: ReplicaFactory,
        breaker_policy: BreakerPolicy,
        options: PoolOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._factory = factory
        self._policy = breaker_policy
        self._clock = clock
        self.options = options or PoolOptions()
        self.replicas: dict[str, Replica] = {}
        self._ring = HashRing()
        self._turn = 0  # round-robin position
        self.last_decision: Decision | None = None
        self.on_change: list[Callable[[str, str], None]] = []  # (event, replica id)

    # -- membership -------------------------------------------------------------------------

    def add(self, url: str, source: str = "static") -> Replica:
        url = url.rstrip("/")
        existing = self.replicas.get(url)
        if existing is not None:
            return existing
        provider, client = self._factory(url)
        r = Replica(url, provider, Breaker(self._policy, self._clock), client, source)
        self.replicas[url] = r
        log.info("pool %s: replica %s joined (%s)", self._name, url, source)
        self._changed("joined", url)
        return r

    async def remove(self, url: str) -> None:
        """Take a replica out; its in-flight streams keep their provider until they end."""
        r = self.replicas.pop(url.rstrip("/"), None)
        if r is None:
            return
        log.info("pool %s: replica %s left", self._name, r.id)
        self._changed("left", r.id)
        r.retired = True
        if r.in_flight == 0:
            await r.provider.aclose()

    async def sync(self, urls: Iterable[str], source: str) -> None:
        """Make the replicas of ``source`` exactly ``urls`` (a DNS answer, a pushed list)."""
        want = {u.rstrip("/") for u in urls}
        for u in sorted(want):
            self.add(u, source)
        for r in [r for r in self.replicas.values() if r.source == source and r.id not in want]:
            await self.remove(r.id)

    def _changed(self, event: str, replica: str) -> None:
        for cb in self.on_change:
            cb(event, replica)

    def drain(self, replica: str, draining: bool = True) -> Replica:
        r = self.replicas.get(replica.rstrip("/"))
        if r is None:
            raise KeyError(replica)
        if r.draining != draining:
            r.draining = draining
            self._changed("drained" if draining else "undrained", r.id)
        return r

    # -- placement --------------------------------------------------------------------------

    def choose(
        self, route: Route, messages: tuple[ChatMessage, ...] = (), model: str = ""
    ) -> Decision:
        screen = len(self.replicas) > 1
        views = [r.view(screen, model) for r in self.replicas.values()]
        tried = frozenset(route.tried)
        if self.options.strategy == "round_robin":
            self._turn += 1
            decision = round_robin(views, self._turn, tried)
        elif self.options.strategy == "least_loaded":
            decision = least_loaded(views, tried)
        else:
            key = route.key or prefix_key(_leading_text(messages), self.options.prefix_chars)
            decision = place(views, key, self._ring, tried, self.options.load_factor)
        self.last_decision = decision
        return decision

    def _take(
        self, call_route: Route | None, messages: tuple[ChatMessage, ...], model: str
    ) -> Replica:
        route = call_route if call_route is not None else Route()
        decision = self.choose(route, messages, model)
        trace.get_current_span().add_event("llmgateway.placement", decision.attributes())
        if decision.replica is None:
            out = ", ".join(f"{rid} {why.value}" for rid, why in decision.skipped) or "none"
            raise RouterError(
                ErrorKind.LLM_UNAVAILABLE,
                f"{self._name}: no replica can take the request ({out})",
                self._name,
                engine_down=True,
            )
        r = self.replicas[decision.replica]
        if len(self.replicas) > 1:
            r.breaker.allow()  # a half-open replica's probe slot is taken here
        route.tried.add(r.id)
        r.stats.attempts += 1
        r.stats.placed[decision.reason.value] += 1
        r.in_flight += 1
        return r

    def _judge(self, r: Replica, err: RouterError) -> None:
        r.stats.failures += 1
        if err.kind in COUNTED:
            r.breaker.failure()
        else:
            r.breaker.release()
        unreachable = err.engine_down and err.http_status is None
        # Unreachable: out of placement now, back when a probe answers.
        if unreachable and len(self.replicas) > 1 and r.mark(False, err.message):
            log.warning("pool %s: replica %s down: %s", self._name, r.id, err.message)

    # -- Provider ---------------------------------------------------------------------------

    @property
    def name(self) -> ProviderName:
        return self._name

    @property
    def base_url(self) -> str:
        return ",".join(self.replicas)

    async def stream_chat(self, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        r = self._take(call.route, call.messages, call.model)
        judged = False

        counted = False

        def timed_out() -> None:
            # The dispatcher's stream watch saw this attempt time out; it calls this after it
            # closed the stream (whose close released the breaker without a verdict).
            nonlocal counted
            if not counted:
                counted = True
                r.stats.timeouts += 1
                r.stats.failures += 1
                r.breaker.failure()

        if call.route is not None:
            call.route.on_timeout = timed_out
        stream = r.provider.stream_chat(call)
        first = True
        try:
            async for chunk in stream:
                if first:
                    first = False
                    r.breaker.first_token()
                if chunk.done:
                    judged = True
                    r.breaker.success()
                    r.stats.successes += 1
                yield chunk
        except RouterError as err:
            judged = True
            self._judge(r, err)
            raise
        finally:
            r.in_flight -= 1
            if not judged:
                r.breaker.release()  # cancelled, or closed by the caller: no verdict
            await stream.aclose()
            await _close_if_retired(r)

    async def embed(self, call: EmbedCall) -> EmbedOutput:
        r = self._take(call.route, (), call.model)
        try:
            out = await r.provider.embed(call)
        except RouterError as err:
            self._judge(r, err)
            raise
        except BaseException:
            r.breaker.release()
            raise
        else:
            r.breaker.success()
            r.stats.successes += 1
            return out
        finally:
            r.in_flight -= 1
            await _close_if_retired(r)

    async def probe(self) -> None:
        """Probe every replica (their health feeds placement); raise unless one is healthy."""
        replicas = list(self.replicas.values())
        await asyncio.gather(*(self._probe(r) for r in replicas))
        if not any(r.healthy for r in replicas):
            detail = "; ".join(f"{r.id}: {r.detail}" for r in replicas) or "no replicas"
            raise RouterError(
                ErrorKind.LLM_UNAVAILABLE, f"{self._name}: no healthy replica ({detail})"
            )

    async def _probe(self, r: Replica) -> None:
        t0 = time.monotonic()
        try:
            await r.provider.probe()
        except RouterError as exc:
            healthy, detail = False, str(exc)
        else:
            healthy, detail = True, ""
        if r.mark(healthy, detail, (time.monotonic() - t0) * 1000):
            log.info("pool %s: replica %s is %s %s", self._name, r.id, _word(healthy), detail)

    async def aclose(self) -> None:
        for r in self.replicas.values():
            await r.provider.aclose()

    # -- read side --------------------------------------------------------------------------

    def hit_rate(self) -> float | None:
        """The pool's prefix-cache hit rate (tokens hit / queried) over the scraped window."""
        queried = hit = 0.0
        for r in self.replicas.values():
            q, h = r.prefix_window
            queried, hit = queried + q, hit + h
        return hit / queried if queried > 0 else None

    def reason_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.replicas.values():
            for k, v in r.stats.placed.items():
                out[k] = out.get(k, 0) + v
        return out


async def _close_if_retired(r: Replica) -> None:
    """A replica that left the pool closes its connections when its last call ends."""
    if r.retired and r.in_flight == 0:
        await r.provider.aclose()


def _word(healthy: bool) -> str:
    return "up" if healthy else "down"
