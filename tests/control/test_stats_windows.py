"""Stats windows: counts and histograms merge by adding, p95 comes from the merged histogram."""

from __future__ import annotations

import math

import pytest

from control_service.stats_windows import Entry, Histogram, Report, StatsWindows

BOUNDS = (100.0, 500.0, 1000.0, 5000.0)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hist(*counts: int) -> Histogram:
    return Histogram(BOUNDS, list(counts), 0.0)


def report(router: str, version: int = 2, **kw: object) -> Report:
    entry = Entry(provider="vllm", task="analysis", **kw)  # type: ignore[arg-type]
    return Report(router, version, 0.0, 10.0, [entry])


def test_p95_comes_from_the_merged_histogram_not_an_average() -> None:
    clock = Clock()
    w = StatsWindows(clock=clock)
    # Router a: 100 fast requests (p95 <= 100 ms). Router b: 100 slow ones (p95 in 1-5 s).
    w.add(report("a", requests=100, total_ms=hist(100, 0, 0, 0, 0)))
    w.add(report("b", requests=100, errors=10, total_ms=hist(0, 0, 0, 100, 0)))
    agg = w.merged(0)[("vllm", "analysis")]
    assert (agg.requests, agg.errors, agg.reports, agg.routers) == (200, 10, 2, {"a", "b"})
    assert agg.error_rate == pytest.approx(0.05)
    assert agg.total_ms is not None
    assert agg.total_ms.counts == [100, 0, 0, 100, 0]
    # Rank 190 of 200 lies in the 1000-5000 bucket: 1000 + 4000 * 90/100.
    assert agg.p95_ms == pytest.approx(4600.0)


def test_overflow_bucket_and_empty_windows() -> None:
    assert hist(0, 0, 0, 0, 5).quantile(0.95) == math.inf
    assert hist(0, 0, 0, 0, 0).quantile(0.95) is None
    w = StatsWindows(clock=Clock())
    assert w.merged(0) == {}
    w.add(report("a", requests=0))
    agg = w.merged(0)[("vllm", "analysis")]
    assert agg.error_rate is None  # no data means hold
    assert agg.p95_ms is None


def test_histograms_with_other_bounds_merge_conservatively() -> None:
    h = hist(0, 0, 0, 0, 0)
    h.merge(Histogram((200.0,), [3, 1], 10.0))
    assert h.counts == [0, 3, 0, 0, 1]
    assert h.sum == 10.0
    with pytest.raises(ValueError, match="counts"):
        Histogram(BOUNDS, [1], 0)


def test_windows_select_by_arrival_time_and_expire() -> None:
    clock = Clock(1000.0)
    w = StatsWindows(retention_s=60, slot_s=5, clock=clock)
    w.add(report("a", requests=1))
    clock.now = 1030.0
    w.add(report("a", requests=2))
    assert w.merged(1025.0)[("vllm", "analysis")].requests == 2
    assert w.merged(0)[("vllm", "analysis")].requests == 3
    assert w.window(10)[("vllm", "analysis")].requests == 2
    clock.now = 1075.0
    w.add(report("a", requests=4))
    assert w.merged(0)[("vllm", "analysis")].requests == 6  # the first slot expired


def test_filters_by_config_version_and_shadow() -> None:
    w = StatsWindows(clock=Clock())
    w.add(report("a", version=3, requests=1))
    w.add(report("a", version=4, requests=10))
    w.add(report("a", version=4, requests=100, shadow=True))
    assert w.merged(0, min_config_version=4)[("vllm", "analysis")].requests == 10
    assert w.merged(0, shadow=True)[("vllm", "analysis")].requests == 100
    both = w.merged(0, shadow=None)[("vllm", "analysis")]
    assert (both.requests, both.config_versions) == (111, {3, 4})


def test_consecutive_timeouts_keep_each_routers_latest() -> None:
    clock = Clock()
    w = StatsWindows(clock=clock)
    w.add(report("a", consecutive_timeouts=4))
    w.add(report("b", consecutive_timeouts=1))
    clock.now += 10
    w.add(report("a", consecutive_timeouts=0, timeouts=1, errors_by_code={"LLM_TIMEOUT": 1}))
    agg = w.merged(0)[("vllm", "analysis")]
    assert agg.consecutive_timeouts == {"a": 0, "b": 1}
    assert agg.max_consecutive_timeouts == 1
    assert agg.errors_by_code == {"LLM_TIMEOUT": 1}
    assert StatsWindows.total(w.merged(0).values()).timeouts == 1


def test_merging_does_not_mutate_the_stored_slots() -> None:
    w = StatsWindows(clock=Clock())
    w.add(report("a", requests=1, total_ms=hist(1, 0, 0, 0, 0)))
    first = w.merged(0)[("vllm", "analysis")]
    assert first.total_ms is not None
    first.total_ms.counts[0] = 99
    assert w.merged(0)[("vllm", "analysis")].total_ms == hist(1, 0, 0, 0, 0)
