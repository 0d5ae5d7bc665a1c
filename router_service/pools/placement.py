"""Which replica of an engine pool serves a request, and why. Plain logic, no I/O.

Prefix caching only pays when the calls that share a prefix reach the replica that holds it;
round-robin spreads them over every replica and each one recomputes the prefix. So a request
with an affinity key (the memOS query id, else a hash of its leading prompt text) goes to the
key's owner on a consistent-hash ring: the calls of one episode land together, and adding or
removing a replica moves only the keys next to it.

Plain consistent hashing lets one hot key (every query sharing a system prompt) pile onto one
replica. *Consistent hashing with bounded loads* (Mirrokni, Thorup, Zadimoghaddam, 2018) caps
each replica at ``ceil(c * (total + 1) / n)`` requests; a full owner passes the request on
along the ring, so the spill is itself consistent (the same next replica keeps the overflow's
cache warm). With ``c = 1.25`` no replica carries more than 1.25x the mean.

A request with no key goes to the least-loaded replica. Load is what the router itself has in
flight on a replica, or what the engine reports (``running + waiting`` from vLLM's /metrics,
which also counts other routers' requests), whichever is larger; ties go to a replica that has
the model loaded (Ollama's /api/ps), then to the lower KV-cache usage.

Replicas that are unhealthy, draining or whose breaker is open are never chosen. Replicas this
request already tried are avoided while any other is eligible: a retry goes to another replica.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "DEFAULT_LOAD_FACTOR",
    "Decision",
    "HashRing",
    "Reason",
    "ReplicaView",
    "Skip",
    "least_loaded",
    "place",
    "prefix_key",
    "round_robin",
]

DEFAULT_LOAD_FACTOR = 1.25
# Virtual nodes per replica: enough that 2-8 replicas share the ring evenly (about +-10%).
VNODES = 160


class Reason(Enum):
    """Why the chosen replica was chosen."""

    AFFINITY = "affinity"  # the key's owner on the ring
    AFFINITY_SPILL = "affinity_spill"  # the owner was at its load bound: next on the ring
    LEAST_LOADED = "least_loaded"  # no affinity key
    ROUND_ROBIN = "round_robin"  # the round-robin baseline (pool_placement=round_robin)
    NONE_ELIGIBLE = "none_eligible"  # nothing can serve: every replica is out


class Skip(Enum):
    """Why a replica was passed over."""

    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    BREAKER_OPEN = "breaker_open"
    TRIED = "tried"  # this request already failed there
    AT_BOUND = "at_bound"  # its load reached the bound


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What placement knows of one replica at the moment of the decision."""

    id: str
    healthy: bool = True
    draining: bool = False
    breaker_open: bool = False
    in_flight: int = 0  # this router's requests on it now
    engine_load: int = 0  # running + waiting as the engine last reported (0: unknown)
    kv_usage: float = 0.0  # 0..1, vLLM's kv_cache_usage_perc (0: unknown)
    # Whether the requested model is loaded (Ollama /api/ps); None: unknown (vLLM, not scraped).
    model_loaded: bool | None = None

    @property
    def load(self) -> int:
        return max(self.in_flight, self.engine_load)


@dataclass(frozen=True, slots=True)
class Decision:
    """One placement, as data: tests assert it, traces and logs show it."""

    replica: str | None  # None with Reason.NONE_ELIGIBLE
    reason: Reason
    key: str = ""  # the affinity key used ("" for least-loaded)
    bound: int = 0  # the load bound in force (affinity only)
    skipped: tuple[tuple[str, Skip], ...] = ()

    def attributes(self) -> dict[str, str | int]:
        """Span/log attributes (the key is a hash, never prompt text)."""
        out: dict[str, str | int] = {
            "llmgateway.replica": self.replica or "",
            "llmgateway.placement": self.reason.value,
        }
        if self.bound:
            out["llmgateway.placement.bound"] = self.bound
        if self.skipped:
            skipped = (f"{r}:{why.value}" for r, why in self.skipped)
            out["llmgateway.placement.skipped"] = ",".join(skipped)
        return out


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass
class HashRing:
    """A consistent-hash ring of replica ids with ``vnodes`` points each."""

    vnodes: int = VNODES
    _points: list[int] = field(default_factory=list)
    _owners: list[str] = field(default_factory=list)
    _members: tuple[str, ...] = ()

    def update(self, members: Sequence[str]) -> None:
        """Rebuild when membership changed (cheap no-op otherwise)."""
        ids = tuple(sorted(set(members)))
        if ids == self._members:
            return
        pts = sorted((_hash(f"{m}#{i}"), m) for m in ids for i in range(self.vnodes))
        self._points = [p for p, _ in pts]
        self._owners = [m for _, m in pts]
        self._members = ids

    def walk(self, key: str) -> list[str]:
        """Every member once, in ring order starting at ``key``'s owner."""
        if not self._points:
            return []
        start = bisect.bisect(self._points, _hash(key)) % len(self._points)
        seen: list[str] = []
        n = len(self._members)
        for i in range(len(self._owners)):
            owner = self._owners[(start + i) % len(self._owners)]
            if owner not in seen:
                seen.append(owner)
                if len(seen) == n:
                    break
        return seen


def prefix_key(leading_text: str, max_chars: int = 2048) -> str:
    """An affinity key from a prompt's leading text (a digest: no prompt text is kept)."""
    if not leading_text:
        return ""
    digest = hashlib.blake2b(leading_text[:max_chars].encode(), digest_size=8).hexdigest()
    return "prefix:" + digest


def _screen(
    replicas: Sequence[ReplicaView], tried: frozenset[str]
) -> tuple[list[ReplicaView], list[tuple[str, Skip]]]:
    """The replicas that may serve, preferring untried ones; and those passed over."""
    skipped: list[tuple[str, Skip]] = []
    ok: list[ReplicaView] = []
    for r in replicas:
        if not r.healthy:
            skipped.append((r.id, Skip.UNHEALTHY))
        elif r.draining:
            skipped.append((r.id, Skip.DRAINING))
        elif r.breaker_open:
            skipped.append((r.id, Skip.BREAKER_OPEN))
        else:
            ok.append(r)
    fresh = [r for r in ok if r.id not in tried]
    if fresh and len(fresh) < len(ok):
        skipped.extend((r.id, Skip.TRIED) for r in ok if r.id in tried)
        ok = fresh
    # Every eligible replica already tried: any of them again beats failing the request here.
    return ok, skipped


def least_loaded(replicas: Sequence[ReplicaView], tried: frozenset[str] = frozenset()) -> Decision:
    ok, skipped = _screen(replicas, tried)
    if not ok:
        return Decision(None, Reason.NONE_ELIGIBLE, skipped=tuple(skipped))
    # On equal load, a replica with the model loaded beats one that would load it first.
    best = min(ok, key=lambda r: (r.load, r.model_loaded is False, r.kv_usage, r.id))
    return Decision(best.id, Reason.LEAST_LOADED, skipped=tuple(skipped))


def round_robin(
    replicas: Sequence[ReplicaView], turn: int, tried: frozenset[str] = frozenset()
) -> Decision:
    """The ``turn``-th eligible replica, in id order: the baseline that ignores caches (the
    benchmark's comparison, and an operator's escape hatch)."""
    ok, skipped = _screen(replicas, tried)
    if not ok:
        return Decision(None, Reason.NONE_ELIGIBLE, skipped=tuple(skipped))
    ordered = sorted(ok, key=lambda r: r.id)
    return Decision(ordered[turn % len(ordered)].id, Reason.ROUND_ROBIN, skipped=tuple(skipped))


def place(
    replicas: Sequence[ReplicaView],
    key: str,
    ring: HashRing,
    tried: frozenset[str] = frozenset(),
    load_factor: float = DEFAULT_LOAD_FACTOR,
) -> Decision:
    """The replica for a request with affinity ``key`` ("" for none)."""
    if not key:
        return least_loaded(replicas, tried)
    ring.update([r.id for r in replicas])
    ok, skipped = _screen(replicas, tried)
    if not ok:
        return Decision(None, Reason.NONE_ELIGIBLE, key=key, skipped=tuple(skipped))
    by_id = {r.id: r for r in ok}
    total = sum(r.load for r in ok)
    # The bound counts this request too, so an idle pool always has room for it.
    bound = max(1, math.ceil(load_factor * (total + 1) / len(ok)))
    first = True
    for rid in ring.walk(key):
        r = by_id.get(rid)
        if r is not None:
            if r.load < bound:
                reason = Reason.AFFINITY if first else Reason.AFFINITY_SPILL
                return Decision(rid, reason, key=key, bound=bound, skipped=tuple(skipped))
            skipped.append((rid, Skip.AT_BOUND))
        first = False  # the owner is out (screened or full): what follows is a spill
    # Unreachable with c >= 1 (some replica is at or below the mean), kept for c < 1.
    fallback = least_loaded(ok)
    return Decision(
        fallback.replica, Reason.LEAST_LOADED, key=key, bound=bound, skipped=tuple(skipped)
    )
