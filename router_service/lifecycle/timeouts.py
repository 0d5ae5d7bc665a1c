"""Stream timeouts per engine, and the per-request policy built from settings and pushed flags.

Two bounds on every streamed attempt, each shorter than a typical client deadline so that the
router, not the client's deadline, notices a stalled engine (and can retry, fall back or
continue):

- ``first_token_s``: from the request to the engine until its first token, headers included
  (so headers-then-silence is a first-token timeout). Retryable: nothing was sent yet.
- ``idle_s``: once tokens flow, the longest wait for the next one. Progress is *tokens*, not
  bytes: empty deltas, keep-alive comments and a trickle of bytes that never completes a line
  do not reset it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llmcore.vocabulary import ProviderName, TaskName

# (task, engine or None for both) -> (first_token_s, idle_s); None keeps the router's setting.
Overrides = Mapping[tuple[TaskName, ProviderName | None], tuple[float | None, float | None]]


@dataclass(frozen=True, slots=True)
class StreamTimeouts:
    first_token_s: float
    idle_s: float


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """What one Generate request may wait on each engine (engines not listed: only the
    deadline bounds them), whether it may continue on another engine after a mid-stream
    failure, and when an engine counts as silent at the client's deadline."""

    timeouts: Mapping[ProviderName, StreamTimeouts] = field(default_factory=dict)
    continuation: bool = False
    silent_after_s: float = 2.0


def resolve(
    defaults: Mapping[ProviderName, StreamTimeouts], overrides: Overrides, task: TaskName
) -> dict[ProviderName, StreamTimeouts]:
    """The timeouts of ``task`` on each engine: an override naming the engine wins over one for
    both engines, which wins over the router's setting; each bound is overridden alone."""
    out: dict[ProviderName, StreamTimeouts] = {}
    for provider, base in defaults.items():
        first, idle = base.first_token_s, base.idle_s
        for key in ((task, None), (task, provider)):
            o_first, o_idle = overrides.get(key, (None, None))
            first = o_first if o_first is not None else first
            idle = o_idle if o_idle is not None else idle
        out[provider] = StreamTimeouts(first, idle)
    return out
