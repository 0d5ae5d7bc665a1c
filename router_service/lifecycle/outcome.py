"""How one attempt at an engine ended, and how the stats count it.

Every attempt a request makes at an engine (retries and fallbacks included) ends in exactly one
:class:`Outcome`, attributed to that engine. The stats the control service judges (error rate,
latency p95, consecutive timeouts) are computed from these, so the mapping in :func:`counting`
is the single definition of "what counts" (docs/failures.md explains each choice):

- ``OK``: a complete answer. A request, not an error; the only outcome that resets the engine's
  consecutive-timeout counter (only a finished answer proves the engine healthy again).
- ``ENGINE_ERROR``: the engine failed (by kind: unavailable, invalid response, ...). An error.
- ``FIRST_TOKEN_TIMEOUT``, ``IDLE_TIMEOUT``: the engine sent no token within its first-token
  timeout, or no new token within its idle timeout (an endless stream of empty deltas or a slow
  byte trickle is idle: idle means no *token* progress). A timeout error: it counts in the error
  rate and adds one to the consecutive-timeout counter.
- ``DEADLINE_SILENT``: the client's deadline expired while the engine was silent (no token for
  ``silent_after_s``, or none yet). The engine made the client wait: counted exactly like a
  timeout of the engine, so a 4 s client deadline against a stalled engine still rolls it back.
- ``DEADLINE_STREAMING``: the client's deadline expired while the engine was streaming at its
  normal pace. The client's budget was too small for the answer, which says nothing bad about
  the engine: counted as a request (its latency is observed) but not as an error, and it leaves
  the consecutive-timeout counter as it was (not a success either: the answer was cut). Reported
  apart (``client_deadlines``) so operators see budgets that are too tight.
- ``CANCELLED``: the client went away. Neither success nor failure: not a request, not an
  error, the counter untouched; only counted apart (``cancelled``).
- ``REJECTED`` (bad input) and ``SHED`` (admission limit): decided before any engine was
  involved, so never attributed to one; they appear in no engine's stats.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from llmcore.vocabulary import ProviderName
from router_service.errors import ErrorKind


class Outcome(enum.Enum):
    OK = "ok"
    ENGINE_ERROR = "engine_error"
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    DEADLINE_SILENT = "deadline_silent"
    DEADLINE_STREAMING = "deadline_streaming"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    SHED = "shed"


@dataclass(frozen=True, slots=True)
class Counting:
    """How one outcome moves an engine's stats."""

    request: bool  # counted in ``requests`` (the error rate's denominator) and in latency
    error: ErrorKind | None  # counted in ``errors`` under this kind (None: not an error)
    resets_timeouts: bool  # sets the consecutive-timeout counter back to zero
    cancelled: bool = False
    client_deadline: bool = False

    @property
    def timeout(self) -> bool:
        """Adds one to ``timeouts`` and to the consecutive-timeout counter."""
        return self.error is ErrorKind.LLM_TIMEOUT


_TIMEOUT = Counting(request=True, error=ErrorKind.LLM_TIMEOUT, resets_timeouts=False)
_FIXED: dict[Outcome, Counting] = {
    Outcome.OK: Counting(request=True, error=None, resets_timeouts=True),
    Outcome.FIRST_TOKEN_TIMEOUT: _TIMEOUT,
    Outcome.IDLE_TIMEOUT: _TIMEOUT,
    Outcome.DEADLINE_SILENT: _TIMEOUT,
    Outcome.DEADLINE_STREAMING: Counting(
        request=True, error=None, resets_timeouts=False, client_deadline=True
    ),
    Outcome.CANCELLED: Counting(request=False, error=None, resets_timeouts=False, cancelled=True),
}


def counting(outcome: Outcome, kind: ErrorKind | None = None) -> Counting | None:
    """How ``outcome`` (with the engine error ``kind`` for ``ENGINE_ERROR``) is counted against
    its engine; None for outcomes no engine is answerable for (rejected, shed)."""
    if outcome is Outcome.ENGINE_ERROR:
        return Counting(
            request=True, error=kind or ErrorKind.LLM_UNAVAILABLE, resets_timeouts=False
        )
    return _FIXED.get(outcome)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One finished attempt at one engine: what happened and the figures the stats keep."""

    provider: ProviderName
    outcome: Outcome
    error: ErrorKind | None = None
    ttft_ms: float | None = None
    total_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Text this attempt sent to the client before it ended (continuation picks it up).
    streamed: bool = False
