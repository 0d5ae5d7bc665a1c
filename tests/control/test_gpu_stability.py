"""VRAM stability verdicts for the go/no-go gate: pure functions and through the monitor."""

from __future__ import annotations

import pytest

from control_service.gpu import GB, MIB, GpuMonitor, MonitorConfig, NvmlBackend
from control_service.gpu.fake import FakeDevice, FakeNvml
from control_service.gpu.stability import (
    StabilityThresholds,
    coverage,
    evaluate,
    evaluate_device,
    slope_per_hour,
)
from control_service.gpu_service import MonitorVramSource
from control_service.rollback import gate
from control_service.rollback.gonogo import VramSource

T = StabilityThresholds(
    max_drift_bytes=1 * GB, max_slope_bytes_per_hour=0.25 * GB, min_coverage=0.9, min_samples=10
)
WINDOW = 3600.0
NOW = 10_000.0


def series(values: list[int], *, every: float = 60.0, end: float = NOW) -> list[tuple[float, int]]:
    start = end - every * (len(values) - 1)
    return [(start + i * every, v) for i, v in enumerate(values)]


def judge(points: list[tuple[float, int]], ooms: int = 0) -> str:
    v = evaluate_device(
        "GPU 0", points, ooms, window_s=WINDOW, now=NOW, gap_limit_s=180.0, thresholds=T
    )
    return v.verdict


def test_flat_usage_over_the_whole_window_is_stable() -> None:
    points = series([10 * GB] * 61)
    v = evaluate_device(
        "GPU 0", points, 0, window_s=WINDOW, now=NOW, gap_limit_s=180.0, thresholds=T
    )
    assert (v.verdict, v.drift_bytes, v.samples) == ("stable", 0, 61)
    assert v.slope_bytes_per_hour == pytest.approx(0.0)
    assert v.coverage == pytest.approx(1.0)
    assert v.stable


def test_any_oom_is_unstable_even_with_little_data() -> None:
    assert judge(series([10 * GB] * 3), ooms=1) == "unstable"


def test_too_short_or_too_few_samples_is_inconclusive() -> None:
    assert judge(series([10 * GB] * 30)) == "inconclusive"  # half the window
    # Whole window but only 5 samples (gaps longer than the gap limit do not count).
    assert judge(series([10 * GB] * 5, every=900.0)) == "inconclusive"


def test_drift_above_the_limit_is_unstable_at_the_limit_stable() -> None:
    at_limit = [10 * GB] * 60 + [11 * GB]
    assert judge(series(at_limit)) == "stable"
    over = [10 * GB] * 60 + [11 * GB + 1]
    v = evaluate_device(
        "GPU 0", series(over), 0, window_s=WINDOW, now=NOW, gap_limit_s=180.0, thresholds=T
    )
    assert v.verdict == "unstable"
    assert "drifted 1.00 GB" in v.reason


def test_a_slow_leak_under_the_drift_limit_shows_as_a_slope() -> None:
    # +0.9 GB over the hour: drift under 1 GB, trend 0.9 GB/h > 0.25 GB/h.
    leak = [10 * GB + int(i * 0.015 * GB) for i in range(61)]
    v = evaluate_device(
        "GPU 0", series(leak), 0, window_s=WINDOW, now=NOW, gap_limit_s=180.0, thresholds=T
    )
    assert v.verdict == "unstable"
    assert v.slope_bytes_per_hour == pytest.approx(0.9 * GB, rel=1e-6)
    assert "trends" in v.reason


def test_slope_and_coverage_helpers() -> None:
    assert slope_per_hour([]) == 0.0
    assert slope_per_hour([(0.0, 5), (0.0, 7)]) == 0.0
    assert slope_per_hour([(0.0, 0), (1800.0, GB)]) == pytest.approx(2 * GB)
    # A two-hour gap counts only up to the gap limit.
    assert coverage([(0.0, 1), (7200.0, 1)], 7200.0, 7200.0, 60.0) == pytest.approx(60 / 7200)
    assert coverage([], 60.0, 0.0, 10.0) == 0.0


def test_several_devices_the_worst_wins_and_no_data_is_inconclusive() -> None:
    good = series([10 * GB] * 61)
    bad = series([10 * GB] * 60 + [12 * GB])
    v = evaluate(
        {"GPU 0": good, "GPU 1": bad},
        {},
        window_s=WINDOW,
        now=NOW,
        gap_limit_s=180.0,
        thresholds=T,
    )
    assert (v.verdict, v.device) == ("unstable", "GPU 1")
    v = evaluate(
        {},
        {},
        window_s=WINDOW,
        now=NOW,
        gap_limit_s=180.0,
        thresholds=T,
        unavailable_reason="no GPU: NVML library not found",
    )
    assert v.verdict == "inconclusive"
    assert "no GPU: NVML library not found" in v.reason


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_monitor_vram_stability_over_its_window() -> None:
    clock = Clock()
    nvml = FakeNvml([FakeDevice(total=24 * GB, reserved=0, used=8 * GB)])
    config = MonitorConfig(
        interval_s=1.0,
        stability_window_s=100.0,
        stability=StabilityThresholds(max_drift_bytes=512 * MIB, min_samples=10),
    )
    m = GpuMonitor(NvmlBackend(nvml), config, clock=clock, monotonic=clock)
    assert m.vram_stability().verdict == "inconclusive"
    for _ in range(101):
        m.poll_once()
        clock.now += 1.0
    clock.now -= 1.0
    assert m.vram_stability().verdict == "stable"
    # A short window is judged on its own samples.
    assert m.vram_stability(20.0).samples == 21
    nvml.update(0, used=9 * GB)
    clock.now += 1.0
    m.poll_once()
    v = m.vram_stability()
    assert v.verdict == "unstable"
    assert v.device == "GPU 0 (NVIDIA TITAN RTX)"
    # Telemetry lost: the window stops being covered, so the verdict holds promotion.
    nvml.update(0, lost=True)
    for _ in range(60):
        clock.now += 1.0
        m.poll_once()
    assert m.vram_stability(30.0).verdict == "inconclusive"


def test_monitor_without_gpu_is_inconclusive() -> None:
    m = GpuMonitor(NvmlBackend(FakeNvml(init_error="LibraryNotFound")))
    m.poll_once()
    v = m.vram_stability(60.0)
    assert v.verdict == "inconclusive"
    assert "NVML library not found" in v.reason


async def test_monitor_is_the_go_no_go_gates_vram_source() -> None:
    clock = Clock()
    nvml = FakeNvml([FakeDevice(total=24 * GB, reserved=0, used=8 * GB)])
    m = GpuMonitor(NvmlBackend(nvml), MonitorConfig(interval_s=1.0), clock=clock, monotonic=clock)
    source: VramSource = MonitorVramSource(m)
    assert await source.vram(60.0) is None  # no samples: no telemetry
    for i in range(121):
        nvml.update(0, used=8 * GB + (GB if i == 100 else 0))
        m.poll_once()
        clock.now += 1.0
    clock.now -= 1.0
    obs = await source.vram(100.0)
    assert obs is not None
    # The sample just before the window vouches for its start: the whole window is covered.
    assert obs.covered_s == pytest.approx(100.0)
    assert (obs.samples, obs.total_bytes, obs.oom_events) == (101, 24 * GB, 0)
    assert (obs.first_used_bytes, obs.last_used_bytes, obs.peak_used_bytes) == (
        8 * GB,
        8 * GB,
        9 * GB,
    )
    criterion = gate.vram(gate.GateThresholds(vram_window_s=100.0), obs)
    assert criterion.verdict is gate.Verdict.GO
    nvml.update(0, used=24 * GB - 100 * MIB)
    m.poll_once()
    obs = await source.vram(100.0)
    assert obs is not None
    assert obs.oom_events == 1
    assert gate.vram(gate.GateThresholds(vram_window_s=100.0), obs).verdict is gate.Verdict.NO_GO


def test_coverage_with_an_anchor_before_the_window() -> None:
    points = [(-5.0, 1), *((float(t), 1) for t in range(0, 100, 2))]
    assert coverage(points, 100.0, 100.0, 6.0) == pytest.approx(1.0)
    assert coverage(points[1:], 100.0, 100.0, 6.0) == pytest.approx(1.0)
    late = [(50.0, 1), (52.0, 1)]
    assert coverage(late, 100.0, 100.0, 6.0) == pytest.approx(0.08)
