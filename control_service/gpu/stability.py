"""VRAM stability over a window, for the seed's go/no-go ("VRAM usage stable over 24 hours";
no-go on "VRAM OOM errors"). Pure functions over ``(time, used bytes)`` series.

Per device, in this order:

1. any OOM event in the window: **unstable** (decisive even with little data);
2. less than ``min_coverage`` of the window observed, or fewer than ``min_samples`` samples:
   **inconclusive** (no data means hold). Gaps longer than ``gap_limit_s`` (telemetry down,
   service restarted) do not count as observed;
3. drift (max - min of used memory) above ``max_drift_bytes``: **unstable**;
4. |slope| of a least-squares line above ``max_slope_bytes_per_hour``: **unstable** (a leak
   that stays under the drift limit in the window still shows as a slope);
5. else **stable**.

Several devices: the worst verdict wins (unstable > inconclusive > stable) and its numbers are
reported. No devices at all: inconclusive.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from control_service.gpu.readings import GB

Verdict = Literal["stable", "unstable", "inconclusive"]
_RANK: dict[Verdict, int] = {"stable": 0, "inconclusive": 1, "unstable": 2}


@dataclass(frozen=True, slots=True)
class StabilityThresholds:
    max_drift_bytes: int = 1 * GB
    max_slope_bytes_per_hour: float = 0.25 * GB
    min_coverage: float = 0.9
    min_samples: int = 10


@dataclass(frozen=True, slots=True)
class StabilityVerdict:
    """The VRAM criterion's outcome with the numbers behind it."""

    verdict: Verdict
    reason: str
    window_s: float
    drift_bytes: int | None = None
    slope_bytes_per_hour: float | None = None
    oom_events: int = 0
    samples: int = 0
    coverage: float = 0.0
    device: str = ""

    @property
    def stable(self) -> bool:
        return self.verdict == "stable"


def slope_per_hour(points: Sequence[tuple[float, int]]) -> float:
    """Least-squares slope of used bytes over time, in bytes per hour (0 for < 2 points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mu = sum(u for _, u in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mt) * (u - mu) for t, u in points)
    return cov / var * 3600.0


def coverage(
    points: Sequence[tuple[float, int]], window_s: float, now: float, gap_limit_s: float
) -> float:
    """Share of the window ``[now - window_s, now]`` observed. Each sample vouches for the time
    after it, up to the next sample or ``gap_limit_s``, whichever comes first; ``points`` may
    start with one sample from before the window (it vouches for the window's start)."""
    if not points or window_s <= 0:
        return 0.0
    start = now - window_s
    observed = 0.0
    for (a, _), (b, _) in itertools.pairwise([*points, (now, 0)]):
        lo, hi = max(a, start), min(b, now, a + gap_limit_s)
        observed += max(0.0, hi - lo)
    return min(1.0, observed / window_s)


def _gb(n: float) -> str:
    return f"{n / GB:.2f} GB"


def evaluate_device(
    device: str,
    points: Sequence[tuple[float, int]],
    oom_events: int,
    *,
    window_s: float,
    now: float,
    gap_limit_s: float,
    thresholds: StabilityThresholds,
) -> StabilityVerdict:
    """One device's verdict; ``points`` are its samples inside the window, oldest first, maybe
    preceded by the last sample before the window (counted for coverage only)."""
    cov = coverage(points, window_s, now, gap_limit_s)
    points = [p for p in points if p[0] >= now - window_s]
    samples = len(points)
    used = [u for _, u in points]
    drift = max(used) - min(used) if used else None
    slope = slope_per_hour(points) if samples >= 2 else None

    def verdict(v: Verdict, reason: str) -> StabilityVerdict:
        return StabilityVerdict(v, reason, window_s, drift, slope, oom_events, samples, cov, device)

    if oom_events:
        return verdict("unstable", f"{device}: {oom_events} OOM event(s) in the window")
    if cov < thresholds.min_coverage or samples < thresholds.min_samples:
        return verdict(
            "inconclusive",
            f"{device}: observed {cov:.0%} of the {window_s:g}s window ({samples} samples); "
            f"needs {thresholds.min_coverage:.0%} and {thresholds.min_samples} samples",
        )
    assert drift is not None
    assert slope is not None
    if drift > thresholds.max_drift_bytes:
        return verdict(
            "unstable",
            f"{device}: used memory drifted {_gb(drift)} (max {_gb(thresholds.max_drift_bytes)})",
        )
    if abs(slope) > thresholds.max_slope_bytes_per_hour:
        return verdict(
            "unstable",
            f"{device}: used memory trends {_gb(slope)}/h "
            f"(max {_gb(thresholds.max_slope_bytes_per_hour)}/h)",
        )
    return verdict(
        "stable",
        f"{device}: drift {_gb(drift)}, trend {_gb(slope)}/h, no OOM over {cov:.0%} of "
        f"the {window_s:g}s window",
    )


def evaluate(
    series: Mapping[str, Sequence[tuple[float, int]]],
    oom_events: Mapping[str, int],
    *,
    window_s: float,
    now: float,
    gap_limit_s: float,
    thresholds: StabilityThresholds,
    unavailable_reason: str = "",
) -> StabilityVerdict:
    """The worst device verdict over ``series`` (device label -> points in the window)."""
    if not series:
        why = unavailable_reason or "no GPU samples"
        return StabilityVerdict("inconclusive", f"no VRAM data: {why}", window_s)
    verdicts = [
        evaluate_device(
            device,
            points,
            oom_events.get(device, 0),
            window_s=window_s,
            now=now,
            gap_limit_s=gap_limit_s,
            thresholds=thresholds,
        )
        for device, points in series.items()
    ]
    return max(verdicts, key=lambda v: _RANK[v.verdict])
