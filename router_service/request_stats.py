"""Per-(provider, task) request outcomes and shadow comparisons, drained into reports for the
control service.

Histograms use fixed buckets so the control service can merge them across routers by adding
counts (a fleet p95 from merged buckets, never an average of per-router p95s).

Shadow comparisons are bounded per report: at most ``max_shadow_pairs`` compared pairs and as many
dropped-mirror entries are kept per interval, chosen by reservoir sampling (so the kept ones are
a uniform sample of the interval, not its first seconds); the rest are only counted.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from llmcore.vocabulary import ProviderName, TaskName
from router_service.errors import ErrorKind
from router_service.lifecycle.outcome import AttemptOutcome, counting

# Milliseconds; dense around the seed's 5 s p95 threshold and its 10 s no-go line.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    25, 50, 100, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7500, 10000, 15000, 20000,
    30000, 60000, 120000,
)  # fmt: skip


@dataclass
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BOUNDS_MS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass
class Aggregate:
    requests: int = 0
    errors: int = 0
    errors_by_kind: Counter[ErrorKind] = field(default_factory=Counter)
    timeouts: int = 0
    ttft_ms: Histogram = field(default_factory=Histogram)
    total_ms: Histogram = field(default_factory=Histogram)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Outcomes counted apart (see router_service.lifecycle.outcome): not requests / not errors.
    cancelled: int = 0
    client_deadlines: int = 0


Key = tuple[ProviderName, TaskName, bool]  # (provider, task, shadow)


@dataclass(frozen=True, slots=True)
class KindFigures:
    """A pair compared by what the request asked for (router_service.shadow._kinds)."""

    output_kind: str = "text"  # text, json, tool_calls
    primary_json_valid: bool = False
    shadow_json_valid: bool = False
    primary_schema_valid: bool = False
    shadow_schema_valid: bool = False
    tool_calls_agree: bool | None = None  # None: neither side called a tool
    reasoning_length_ratio: float | None = None  # None: the primary did not reason
    primary_finish_length: bool = False
    shadow_finish_length: bool = False


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """One primary answer compared with its shadow (or, with ``dropped``, a mirror not sent
    because the shadow queue was full). Texts are empty unless content capture is on."""

    request_id: str
    task: TaskName
    model: str
    primary_provider: ProviderName
    shadow_provider: ProviderName
    primary_ok: bool = False
    shadow_ok: bool = False
    shadow_error: ErrorKind | None = None
    primary_ttft_ms: float = 0.0
    shadow_ttft_ms: float = 0.0
    primary_tokens_per_second: float = 0.0
    shadow_tokens_per_second: float = 0.0
    length_ratio: float = 0.0
    text_similarity: float = 0.0
    embedding_cosine: float | None = None
    prompt: str = ""
    primary_text: str = ""
    shadow_text: str = ""
    dropped: bool = False
    # The episode (memOS query id) and the meaning figures (router_service.shadow._semantic).
    routing_key: str = ""
    semantic_dropped: bool = False
    json_field_agreement: float | None = None
    json_equal: bool | None = None
    # The LLM judge's verdict from the shadow's side (None: not judged; "unjudged": asked, no
    # usable verdict), and whether a swapped re-judging agreed.
    judge_verdict: str | None = None
    judge_swap_agreed: bool | None = None
    kinds: KindFigures = field(default_factory=KindFigures)


class _Reservoir:
    """A uniform sample of at most ``size`` items of a stream (Vitter's algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.items: list[ShadowRecord] = []
        self.seen = 0
        self._rng = rng

    def add(self, item: ShadowRecord) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        j = self._rng.randrange(self.seen)
        if j < self.size:
            self.items[j] = item


@dataclass
class Drained:
    """What one drain hands to the report: request aggregates and the interval's shadow data."""

    aggregates: dict[Key, Aggregate] = field(default_factory=dict)
    # Compared pairs and dropped-mirror entries kept for the report (bounded, see above).
    shadow_comparisons: list[ShadowRecord] = field(default_factory=list)
    # Exact number of mirrors dropped in the interval (entries above may be a sample of them).
    shadow_dropped: int = 0
    # Compared pairs beyond the per-report bound (counted, not sent).
    shadow_omitted: int = 0

    def __bool__(self) -> bool:
        return bool(self.aggregates or self.shadow_comparisons or self.shadow_dropped)


class RequestStatsRecorder:
    """Accumulates outcomes between two drains. Single-threaded (the event loop's)."""

    def __init__(self, max_shadow_pairs: int = 500, rng: random.Random | None = None) -> None:
        self._current: dict[Key, Aggregate] = {}
        self._consecutive_timeouts: Counter[ProviderName] = Counter()
        self._max_pairs = max_shadow_pairs
        self._rng = rng or random.Random()
        self._pairs = _Reservoir(max_shadow_pairs, self._rng)
        # Called with each shadow record as it is made (metrics).
        self.shadow_observers: list[Callable[[ShadowRecord], None]] = []
        self._dropped = _Reservoir(max_shadow_pairs, self._rng)
        # Called with each attempt outcome as it is counted (tests, metrics).
        self.outcome_observers: list[Callable[[TaskName, AttemptOutcome], None]] = []

    def record(
        self,
        provider: ProviderName,
        task: TaskName,
        error: ErrorKind | None,
        ttft_ms: float | None,
        total_ms: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        shadow: bool = False,
        resets_timeouts: bool = True,
    ) -> None:
        """A counted request; ``resets_timeouts=False`` for one that is no error but no proof
        of health either (cut by the client's deadline while streaming)."""
        agg = self._aggregate(provider, task, shadow)
        agg.requests += 1
        agg.total_ms.observe(total_ms)
        if ttft_ms is not None:
            agg.ttft_ms.observe(ttft_ms)
        agg.prompt_tokens += prompt_tokens
        agg.completion_tokens += completion_tokens
        if error is None:
            if not shadow and resets_timeouts:
                self._consecutive_timeouts[provider] = 0
            return
        agg.errors += 1
        agg.errors_by_kind[error] += 1
        if error is ErrorKind.LLM_TIMEOUT:
            agg.timeouts += 1
            if not shadow:
                self._consecutive_timeouts[provider] += 1

    def record_outcome(self, task: TaskName, outcome: AttemptOutcome) -> None:
        """One attempt of a live request, counted as ``counting`` says (the one definition)."""
        how = counting(outcome.outcome, outcome.error)
        if how is None:
            return
        if not how.request:
            self._aggregate(outcome.provider, task, False).cancelled += how.cancelled
        else:
            if how.client_deadline:
                self._aggregate(outcome.provider, task, False).client_deadlines += 1
            self.record(
                outcome.provider,
                task,
                how.error,
                outcome.ttft_ms,
                outcome.total_ms,
                outcome.prompt_tokens,
                outcome.completion_tokens,
                resets_timeouts=how.resets_timeouts,
            )
        for observe in self.outcome_observers:  # after counting: they see the new counter
            observe(task, outcome)

    def _aggregate(self, provider: ProviderName, task: TaskName, shadow: bool) -> Aggregate:
        agg = self._current.get((provider, task, shadow))
        if agg is None:
            agg = self._current[(provider, task, shadow)] = Aggregate()
        return agg

    def consecutive_timeouts(self, provider: ProviderName) -> int:
        return self._consecutive_timeouts[provider]

    def record_shadow(self, record: ShadowRecord) -> None:
        """A compared pair, or (``record.dropped``) a mirror the full shadow queue refused."""
        (self._dropped if record.dropped else self._pairs).add(record)
        for observe in self.shadow_observers:
            observe(record)

    def drain(self) -> Drained:
        """The outcomes since the last drain; the recorder starts empty again."""
        pairs, dropped = self._pairs, self._dropped
        out = Drained(
            aggregates=self._current,
            shadow_comparisons=[*pairs.items, *dropped.items],
            shadow_dropped=dropped.seen,
            shadow_omitted=pairs.seen - len(pairs.items),
        )
        self._current = {}
        self._pairs = _Reservoir(self._max_pairs, self._rng)
        self._dropped = _Reservoir(self._max_pairs, self._rng)
        return out
