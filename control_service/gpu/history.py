"""Bounded per-device history: recent readings (for watchers and OOM detection) and a longer,
compact series of used memory (for the stability window)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from control_service.gpu.readings import DeviceReading


@dataclass(frozen=True, slots=True)
class Sample:
    time: float
    reading: DeviceReading


def allocated_bytes(r: DeviceReading) -> int | None:
    """``total - free``: what is allocated, reserved memory included, the same with v1 and v2
    memory (v2 ``used`` excludes reserved, v1 ``used`` includes it)."""
    if r.memory_total_bytes is None or r.memory_free_bytes is None:
        return None
    return r.memory_total_bytes - r.memory_free_bytes


class DeviceHistory:
    """``samples``: the last ``size`` readings. ``usage``: ``(time, allocated bytes)`` for up to
    ``usage_size`` polls (sized from the stability window and the poll interval)."""

    def __init__(self, size: int, usage_size: int) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)
        self.usage: deque[tuple[float, int]] = deque(maxlen=usage_size)

    def add(self, t: float, reading: DeviceReading) -> None:
        self.samples.append(Sample(t, reading))
        allocated = allocated_bytes(reading)
        if allocated is not None:
            self.usage.append((t, allocated))

    @property
    def last(self) -> DeviceReading | None:
        return self.samples[-1].reading if self.samples else None

    def usage_since(self, t0: float, *, anchor: bool = False) -> list[tuple[float, int]]:
        """The usage points at or after ``t0``, oldest first; with ``anchor`` preceded by the
        last point before ``t0`` (it tells whether the window's start was observed)."""
        out: list[tuple[float, int]] = []
        for point in reversed(self.usage):
            if point[0] < t0:
                if anchor:
                    out.append(point)
                break
            out.append(point)
        out.reverse()
        return out
