"""Out-of-memory detection from consecutive readings of one device (a heuristic: NVML has no
OOM event; the CUDA allocation failure happens inside the engine's process).

An OOM event is counted when either

1. **memory_full** - free memory drops to at most ``free_epsilon_bytes`` (default 256 MiB)
   from above it. One event per episode: the device must rise above the epsilon again before
   another is counted. (Free, not ``used >= total - epsilon``: with v2 memory ``used``
   excludes the driver's reserved memory, so ``used`` never reaches ``total``.)
2. **process_vanished** - a compute process that was in the previous sample is gone, the
   previous sample was nearly full (``1 - free/total >= near_full_ratio``, default 0.95), and
   used memory went down. This catches an engine that grabbed the last memory and died between
   two polls, which rule 1 never sees. It is not counted when the previous sample was already
   inside a counted memory_full episode (the same OOM). A process that ends normally while the
   GPU is not nearly full is never an event.

Limits: an allocation spike that fails inside a process which survives (vLLM refusing one
request) is invisible; a process that exits normally at >= 95 % use counts (rare: engines keep
their memory until they exit, so near-full exits are usually crashes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from control_service.gpu.readings import MIB, DeviceReading

OomKind = Literal["memory_full", "process_vanished"]


@dataclass(frozen=True, slots=True)
class OomEvent:
    time: float
    device_index: int
    device_key: str
    kind: OomKind
    detail: str


def _gib(n: int) -> str:
    return f"{n / (1024 * MIB):.2f} GiB"


class OomDetector:
    """Feeds on each device's consecutive readings; keeps the per-device episode state."""

    def __init__(self, free_epsilon_bytes: int = 256 * MIB, near_full_ratio: float = 0.95) -> None:
        self.free_epsilon_bytes = free_epsilon_bytes
        self.near_full_ratio = near_full_ratio
        self._in_episode: dict[str, bool] = {}

    def _full(self, r: DeviceReading) -> bool:
        return r.memory_free_bytes is not None and r.memory_free_bytes <= self.free_epsilon_bytes

    def _near_full(self, r: DeviceReading) -> bool:
        if not r.has_memory or not r.memory_total_bytes:
            return False
        free = r.memory_free_bytes or 0
        return 1 - free / r.memory_total_bytes >= self.near_full_ratio

    def observe(self, prev: DeviceReading | None, cur: DeviceReading, t: float) -> OomEvent | None:
        """The event ``cur`` shows after ``prev`` (the device's previous reading), if any."""
        key = cur.key
        was_in_episode = self._in_episode.get(key, False)
        if self._full(cur):
            self._in_episode[key] = True
            if not was_in_episode:
                return OomEvent(
                    t,
                    cur.index,
                    key,
                    "memory_full",
                    f"free {_gib(cur.memory_free_bytes or 0)} <= epsilon "
                    f"{_gib(self.free_epsilon_bytes)} of {_gib(cur.memory_total_bytes or 0)}",
                )
            return None
        self._in_episode[key] = False
        if (
            prev is None
            or was_in_episode
            or prev.processes is None
            or cur.processes is None
            or not self._near_full(prev)
        ):
            return None
        now_pids = {p.pid for p in cur.processes}
        gone = [p for p in prev.processes if p.pid not in now_pids]
        dropped = (prev.memory_used_bytes or 0) - (cur.memory_used_bytes or 0)
        if not gone or dropped <= 0:
            return None
        pids = ", ".join(str(p.pid) for p in gone)
        used_pct = 100 * (1 - (prev.memory_free_bytes or 0) / (prev.memory_total_bytes or 1))
        return OomEvent(
            t,
            cur.index,
            key,
            "process_vanished",
            f"process {pids} vanished at {used_pct:.1f}% memory use; used fell by {_gib(dropped)}",
        )

    def forget(self, key: str) -> None:
        self._in_episode.pop(key, None)
