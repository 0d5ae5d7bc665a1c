"""A circuit breaker per engine, so requests stop paying timeouts to a dead one.

CLOSED counts consecutive failures; at ``failure_threshold`` it OPENs and refuses every request
for ``open_s``; then it is HALF_OPEN and lets ``half_open_probes`` requests through: a success
CLOSEs it, a failure re-OPENs it. Plain logic with an injected clock; not thread-safe (one event
loop).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmcore.vocabulary import ProviderName
from router_service.errors import ErrorKind

# Failures that say the engine is unwell. A missing model or a bad request says nothing about it.
COUNTED = frozenset(
    {ErrorKind.LLM_UNAVAILABLE, ErrorKind.LLM_TIMEOUT, ErrorKind.LLM_INVALID_RESPONSE}
)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    open_s: float = 10.0
    half_open_probes: int = 1


@dataclass
class Breaker:
    policy: BreakerPolicy
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probes_in_flight: int = 0
    transitions: list[tuple[BreakerState, BreakerState]] = field(default_factory=list)

    def _move(self, to: BreakerState) -> None:
        self.transitions.append((self.state, to))
        self.state = to

    def allow(self) -> bool:
        """Whether a request may go to this engine now; a True in HALF_OPEN is a probe, and the
        caller must report its outcome (``success``/``failure``/``release``)."""
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.policy.open_s:
                return False
            self._move(BreakerState.HALF_OPEN)
            self.probes_in_flight = 0
        if self.state is BreakerState.HALF_OPEN:
            if self.probes_in_flight >= self.policy.half_open_probes:
                return False
            self.probes_in_flight += 1
        return True

    def success(self) -> None:
        self.failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self.probes_in_flight = 0
            self._move(BreakerState.CLOSED)

    def first_token(self) -> None:
        """The engine streams: a half-open probe has its verdict at its first token, not when
        its stream ends, so a long (or stalled) probe stream never holds every other request
        off the engine. A stall after this is judged as a failure of a closed breaker."""
        if self.state is BreakerState.HALF_OPEN:
            self.success()

    def failure(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        self.failures += 1
        if self.state is BreakerState.CLOSED and self.failures >= self.policy.failure_threshold:
            self._open()

    def release(self) -> None:
        """The request ended with no verdict on the engine (cancelled, bad input)."""
        if self.state is BreakerState.HALF_OPEN and self.probes_in_flight > 0:
            self.probes_in_flight -= 1

    def _open(self) -> None:
        self.opened_at = self.clock()
        self.probes_in_flight = 0
        self._move(BreakerState.OPEN)


class Breakers:
    """One breaker per engine."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._by_provider: dict[ProviderName, Breaker] = {}

    def __getitem__(self, provider: ProviderName) -> Breaker:
        b = self._by_provider.get(provider)
        if b is None:
            b = self._by_provider[provider] = Breaker(self._policy, self._clock)
        return b

    def state(self, provider: ProviderName) -> BreakerState:
        return self[provider].state
