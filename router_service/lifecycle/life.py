"""One request's lifecycle: its attempts at engines, each closed with an :class:`Outcome`.

The dispatcher opens an attempt when it calls an engine, marks token progress, and closes the
attempt when the engine answered or failed. What the dispatcher cannot see (the client cancelled,
or its deadline expired while the servicer was writing) the servicer closes with
:meth:`RequestLife.finish`.

The stats get one outcome per engine a request used: that engine's last attempt. A retry on the
same engine supersedes the failed attempt before it (a retry that succeeds says the engine
answered; the failed try shows in the retry counters and the trace), while an engine the request
fell over from, or continued away from, is reported with its failure as soon as the next engine
is tried, for Embed as for Generate.

Plain logic with an injected clock; no grpc, no httpx. One event loop, not thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from llmcore.vocabulary import ProviderName, TaskName
from router_service.errors import ErrorKind, RouterError
from router_service.lifecycle.outcome import AttemptOutcome, Outcome


class OutcomeSink(Protocol):
    """Where closed attempts go (the stats recorder)."""

    def record_outcome(self, task: TaskName, outcome: AttemptOutcome) -> None: ...


@dataclass(slots=True)
class Attempt:
    """One call to one engine. Times are the life's clock (seconds)."""

    provider: ProviderName
    model: str
    started_at: float
    first_token_at: float | None = None
    last_token_at: float | None = None
    tokens: int = 0
    closed: bool = False

    def silent_for(self, now: float) -> float:
        """Seconds since the engine's last token (since the attempt started, before one)."""
        return now - (self.last_token_at if self.last_token_at is not None else self.started_at)


@dataclass
class RequestLife:
    """The attempts of one request. ``silent_after_s``: an engine that sent no token for this
    long when the client's deadline expired was silent (an engine timeout); one that did was
    streaming normally (the client's budget ran out). Before its first token an engine is
    always silent."""

    task: TaskName | None
    sink: OutcomeSink | None = None
    silent_after_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    attempts: list[Attempt] = field(default_factory=list)
    outcomes: list[AttemptOutcome] = field(default_factory=list)
    # What went to the sink: one outcome per engine used (see the module docstring).
    reported: list[AttemptOutcome] = field(default_factory=list)
    _pending: AttemptOutcome | None = field(default=None, init=False, repr=False)

    def begin(self, provider: ProviderName, model: str) -> Attempt:
        pending, self._pending = self._pending, None
        if pending is not None and pending.provider != provider:
            self._emit(pending)  # fell over from that engine: its failure counts now
        attempt = Attempt(provider, model, self.clock())
        self.attempts.append(attempt)
        return attempt

    def progress(self, attempt: Attempt, tokens: int) -> None:
        """The engine sent ``tokens`` new tokens (text, or later reasoning/tool deltas)."""
        now = self.clock()
        if attempt.first_token_at is None:
            attempt.first_token_at = now
        attempt.last_token_at = now
        attempt.tokens += tokens

    def succeed(
        self, attempt: Attempt, prompt_tokens: int | None, completion_tokens: int | None
    ) -> None:
        self._close(attempt, Outcome.OK, None, prompt_tokens or 0, completion_tokens)

    def fail(
        self, attempt: Attempt, err: RouterError, outcome: Outcome = Outcome.ENGINE_ERROR
    ) -> None:
        """Close ``attempt`` with the engine error ``err``; the router's own stream timeouts
        pass their ``outcome`` (first-token or idle)."""
        self._close(attempt, outcome, err.kind if outcome is Outcome.ENGINE_ERROR else None)

    def deadline(self, attempt: Attempt) -> Outcome:
        """The client's deadline expired during ``attempt``: silent or streaming (see above)."""
        silent = attempt.tokens == 0 or attempt.silent_for(self.clock()) >= self.silent_after_s
        outcome = Outcome.DEADLINE_SILENT if silent else Outcome.DEADLINE_STREAMING
        self._close(attempt, outcome, None)
        return outcome

    @property
    def open(self) -> Attempt | None:
        """The attempt in progress, if any."""
        if self.attempts and not self.attempts[-1].closed:
            return self.attempts[-1]
        return None

    def finish(self, deadline_expired: bool) -> Outcome | None:
        """The call ended. An attempt still open ended outside the dispatcher: the client
        cancelled, or its deadline expired while the router was not waiting on the engine.
        Reports what is left; returns the outcome given to the open attempt, if any."""
        attempt = self.open
        outcome: Outcome | None = None
        if attempt is not None:
            if deadline_expired:
                outcome = self.deadline(attempt)
            else:
                outcome = Outcome.CANCELLED
                self._close(attempt, outcome, None)
        pending, self._pending = self._pending, None
        if pending is not None:
            self._emit(pending)
        return outcome

    @property
    def last(self) -> AttemptOutcome | None:
        return self.outcomes[-1] if self.outcomes else None

    def _close(
        self,
        attempt: Attempt,
        outcome: Outcome,
        kind: ErrorKind | None,
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
    ) -> None:
        if attempt.closed:
            return
        attempt.closed = True
        now = self.clock()
        ttft = attempt.first_token_at
        closed = AttemptOutcome(
            provider=attempt.provider,
            outcome=outcome,
            error=kind,
            ttft_ms=None if ttft is None else (ttft - attempt.started_at) * 1000,
            total_ms=(now - attempt.started_at) * 1000,
            prompt_tokens=prompt_tokens,
            completion_tokens=attempt.tokens if completion_tokens is None else completion_tokens,
            streamed=attempt.tokens > 0,
        )
        self.outcomes.append(closed)
        self._pending = closed  # reported at the next engine, or at finish; a retry drops it

    def _emit(self, outcome: AttemptOutcome) -> None:
        self.reported.append(outcome)
        if self.sink is not None and self.task is not None:
            self.sink.record_outcome(self.task, outcome)
