"""Time-windowed, mergeable aggregates of the routers' stats reports.

Each report is filed in the time slot it *arrived* in (the control service's clock, so routers'
clock skew cannot move data between windows) and merged into that slot per
(provider, task, shadow, config version). Merging adds counts and histogram buckets; percentiles
are computed from the merged histogram, never averaged (control-plane.md 3.5 item 2).
``merged(since)`` adds up the slots from ``since`` on: the rollback rules
(``control_service.rollback``) read windows from here. Window resolution is one slot (``slot_s``,
default 5 s). ``consecutive_timeouts`` keeps each router's latest count per provider, which is
what the consecutive-timeouts rule judges.

Plain Python: ``convert`` turns the proto ``StatsReport`` into :class:`Report`.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from llmcore.vocabulary import ProviderName, TaskName


@dataclass(slots=True)
class Histogram:
    """Fixed buckets: ``counts[i]`` counts observations <= ``upper_bounds[i]`` (and above the
    previous bound); the last count is the +Inf bucket."""

    upper_bounds: tuple[float, ...]
    counts: list[int]
    sum: float = 0.0

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.upper_bounds) + 1:
            raise ValueError("a histogram needs len(upper_bounds) + 1 counts")
        if any(a >= b for a, b in itertools.pairwise(self.upper_bounds)):
            raise ValueError("upper_bounds must be strictly increasing")

    @property
    def total(self) -> int:
        return sum(self.counts)

    def copy(self) -> Histogram:
        return Histogram(self.upper_bounds, list(self.counts), self.sum)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts. With different bounds each of its buckets is counted at its
        upper bound (conservative: latencies are never under-estimated)."""
        self.sum += other.sum
        if other.upper_bounds == self.upper_bounds:
            for i, c in enumerate(other.counts):
                self.counts[i] += c
            return
        bounds = (*other.upper_bounds, math.inf)
        for bound, c in zip(bounds, other.counts, strict=True):
            if c:
                self.counts[bisect.bisect_left(self.upper_bounds, bound)] += c

    def quantile(self, q: float) -> float | None:
        """Prometheus-style: linear within the bucket holding rank ``q * total``; ``inf`` when it
        is the +Inf bucket; None without observations."""
        total = self.total
        if total == 0:
            return None
        rank = q * total
        cumulative = 0
        for i, c in enumerate(self.counts):
            if c and cumulative + c >= rank:
                if i == len(self.upper_bounds):
                    return math.inf
                lower = self.upper_bounds[i - 1] if i else 0.0
                upper = self.upper_bounds[i]
                return lower + (upper - lower) * max(0.0, rank - cumulative) / c
            cumulative += c
        return math.inf  # pragma: no cover - rank <= total always lands in a bucket


@dataclass(slots=True)
class Entry:
    """One router's counts for one provider and task over one interval (a ProviderTaskStats)."""

    provider: ProviderName
    task: TaskName
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    consecutive_timeouts: int = 0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    ttft_ms: Histogram | None = None
    total_ms: Histogram | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    shadow: bool = False


@dataclass(slots=True)
class Report:
    router_id: str
    config_version: int
    interval_start: float
    interval_end: float
    entries: list[Entry]


@dataclass(slots=True)
class Aggregate:
    """Merged counts for one (provider, task) over a window."""

    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    # Latest consecutive-timeout count each router reported (rules judge it per router).
    consecutive_timeouts: dict[str, int] = field(default_factory=dict)
    ttft_ms: Histogram | None = None
    total_ms: Histogram | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reports: int = 0
    routers: set[str] = field(default_factory=set)
    config_versions: set[int] = field(default_factory=set)

    @property
    def error_rate(self) -> float | None:
        """errors / requests from summed counts; None without requests ("no data")."""
        return self.errors / self.requests if self.requests else None

    @property
    def p95_ms(self) -> float | None:
        """p95 of the request duration from the merged histogram."""
        return self.total_ms.quantile(0.95) if self.total_ms else None

    @property
    def p95_ttft_ms(self) -> float | None:
        return self.ttft_ms.quantile(0.95) if self.ttft_ms else None

    @property
    def max_consecutive_timeouts(self) -> int:
        return max(self.consecutive_timeouts.values(), default=0)

    def merge(self, other: Aggregate) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.timeouts += other.timeouts
        self.errors_by_code.update(other.errors_by_code)
        self.consecutive_timeouts.update(other.consecutive_timeouts)
        self.ttft_ms = _merge_hist(self.ttft_ms, other.ttft_ms)
        self.total_ms = _merge_hist(self.total_ms, other.total_ms)
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.reports += other.reports
        self.routers |= other.routers
        self.config_versions |= other.config_versions

    def add_entry(self, router_id: str, config_version: int, e: Entry) -> None:
        self.requests += e.requests
        self.errors += e.errors
        self.timeouts += e.timeouts
        self.errors_by_code.update(e.errors_by_code)
        self.consecutive_timeouts[router_id] = e.consecutive_timeouts
        self.ttft_ms = _merge_hist(self.ttft_ms, e.ttft_ms)
        self.total_ms = _merge_hist(self.total_ms, e.total_ms)
        self.prompt_tokens += e.prompt_tokens
        self.completion_tokens += e.completion_tokens
        self.reports += 1
        self.routers.add(router_id)
        self.config_versions.add(config_version)


def _merge_hist(mine: Histogram | None, other: Histogram | None) -> Histogram | None:
    if other is None:
        return mine
    if mine is None:
        return other.copy()
    mine.merge(other)
    return mine


# Slot key: provider, task, shadow, config version, router (so a window can be read without
# one router: the rollback's agreement rule).
_Key = tuple[ProviderName, TaskName, bool, int, str]


class StatsWindows:
    """Slots of ``slot_s`` seconds kept for ``retention_s``; see the module docstring."""

    def __init__(
        self,
        retention_s: float = 900.0,
        slot_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if slot_s <= 0 or retention_s < slot_s:
            raise ValueError("need 0 < slot_s <= retention_s")
        self.retention_s = retention_s
        self.slot_s = slot_s
        self._clock = clock
        self._slots: OrderedDict[int, dict[_Key, Aggregate]] = OrderedDict()
        # (router, provider) -> (arrival, config version, consecutive timeouts) of the router's
        # latest answered-request report naming the provider. The counter is per router and
        # provider, not per task, so merging it per (provider, task) would keep stale values.
        self._latest_timeouts: dict[tuple[str, ProviderName], tuple[float, int, int]] = {}
        self.reports_received = 0

    def add(self, report: Report) -> None:
        now = self._clock()
        slot = self._slots.setdefault(int(now // self.slot_s), {})
        for e in report.entries:
            key = (e.provider, e.task, e.shadow, report.config_version, report.router_id)
            agg = slot.get(key)
            if agg is None:
                agg = slot[key] = Aggregate()
            agg.add_entry(report.router_id, report.config_version, e)
        latest: dict[ProviderName, int] = {}
        for e in report.entries:
            if not e.shadow:
                latest[e.provider] = max(latest.get(e.provider, 0), e.consecutive_timeouts)
        for provider, count in latest.items():
            self._latest_timeouts[(report.router_id, provider)] = (
                now,
                report.config_version,
                count,
            )
        self.reports_received += 1
        self._prune(now)

    def _prune(self, now: float) -> None:
        oldest = int((now - self.retention_s) // self.slot_s)
        while self._slots:
            first = next(iter(self._slots))
            if first >= oldest:
                break
            del self._slots[first]
        horizon = now - self.retention_s
        for key in [k for k, (at, _, _) in self._latest_timeouts.items() if at < horizon]:
            del self._latest_timeouts[key]

    def merged(
        self,
        since: float,
        *,
        min_config_version: int = 0,
        shadow: bool | None = False,
        without: str | None = None,
    ) -> dict[tuple[ProviderName, TaskName], Aggregate]:
        """Aggregates per (provider, task) of every report that arrived in a slot overlapping
        ``[since, now]``, run under config version >= ``min_config_version``. ``shadow``:
        False (default) counts answered requests only, True mirrored ones only, None both.
        ``without``: leave that router's reports out."""
        first = int(since // self.slot_s)
        out: dict[tuple[ProviderName, TaskName], Aggregate] = {}
        for slot_id, slot in self._slots.items():
            if slot_id < first:
                continue
            for (provider, task, is_shadow, version, router), agg in slot.items():
                if version < min_config_version or (shadow is not None and is_shadow != shadow):
                    continue
                if router == without:
                    continue
                target = out.get((provider, task))
                if target is None:
                    target = out[(provider, task)] = Aggregate()
                target.merge(agg)
        return out

    def window(
        self, seconds: float, *, min_config_version: int = 0, shadow: bool | None = False
    ) -> dict[tuple[ProviderName, TaskName], Aggregate]:
        """``merged`` over the last ``seconds``."""
        return self.merged(
            self._clock() - seconds, min_config_version=min_config_version, shadow=shadow
        )

    def consecutive_timeouts(
        self, provider: ProviderName, since: float, *, min_config_version: int = 0
    ) -> dict[str, int]:
        """Per router: the consecutive-timeout count of its latest answered-request report for
        ``provider`` that arrived at or after ``since`` under config version >=
        ``min_config_version`` (routers without one are absent)."""
        return {
            router: count
            for (router, p), (at, version, count) in self._latest_timeouts.items()
            if p == provider and at >= since and version >= min_config_version
        }

    @staticmethod
    def total(aggs: Iterable[Aggregate]) -> Aggregate:
        """One aggregate of several (e.g. every task of one provider)."""
        out = Aggregate()
        for a in aggs:
            out.merge(a)
        return out
