"""The GPU monitor: polls a :class:`GpuBackend` at an interval off the event loop, keeps the
latest sample, per-device history and OOM events, and answers stability and metrics questions.

* :meth:`GpuMonitor.start` / :meth:`~GpuMonitor.stop` run the poll loop (each poll in
  ``asyncio.to_thread``: NVML calls block). The loop never dies: each step is wrapped.
* :meth:`~GpuMonitor.updates` is an async iterator of samples (the latest at once, then one per
  poll) for ``WatchGpuStatus``; it ends when the monitor stops.
* :meth:`~GpuMonitor.poll_once` polls synchronously without a loop (scripts, tests).
* :meth:`~GpuMonitor.vram_stability` is the go/no-go VRAM criterion.
* :meth:`~GpuMonitor.metrics_snapshot` is what a metrics layer (Prometheus) reads: plain data,
  no locks, safe to call from the event loop at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from control_service.gpu.backend import GpuBackend
from control_service.gpu.history import DeviceHistory, Sample
from control_service.gpu.oom import OomDetector, OomEvent
from control_service.gpu.readings import MIB, NOT_SAMPLED, GpuStatus
from control_service.gpu.sampler import GpuSampler
from control_service.gpu.stability import (
    StabilityThresholds,
    StabilityVerdict,
    coverage,
    evaluate,
)
from llmcore.notify import ChangeNotifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """How the monitor polls and judges (from ``ControlSettings.gpu_*``)."""

    interval_s: float = 2.0
    retry_interval_s: float = 30.0
    # Recent readings kept per device (1800 x 2 s = one hour).
    history_size: int = 1800
    # The go/no-go window (seed: "VRAM usage stable over 24 hours"); sizes the usage series.
    stability_window_s: float = 86_400.0
    stability: StabilityThresholds = field(default_factory=StabilityThresholds)
    oom_free_epsilon_bytes: int = 256 * MIB
    oom_near_full_ratio: float = 0.95
    oom_events_kept: int = 1000


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """One device's allocated memory (total - free) over a window. ``points`` may start with
    the last sample before the window; ``inside`` are the samples in it."""

    device: str
    device_key: str
    total_bytes: int | None
    points: tuple[tuple[float, int], ...]
    inside: tuple[tuple[float, int], ...]
    oom_events: int
    covered_s: float


@dataclass(frozen=True, slots=True)
class GpuMetricsSnapshot:
    """Everything a metrics exporter needs, read in one call.

    ``status`` is the latest sample (per-device gauges: memory, utilisation, temperature,
    power; a ``None`` metric is absent, export no series). Counters since start:
    ``polls_total``, ``unavailable_polls_total``, ``oom_events_total`` and
    ``oom_events_by_device`` (keyed by UUID). ``last_poll_seconds`` is the last poll's duration.
    """

    status: GpuStatus
    polls_total: int
    unavailable_polls_total: int
    oom_events_total: int
    oom_events_by_device: dict[str, int]
    last_poll_seconds: float


class GpuMonitor:
    """See the module docstring. Not thread-safe: call it from one event loop (or, without a
    loop, from one thread through :meth:`poll_once`)."""

    def __init__(
        self,
        backend: GpuBackend,
        config: MonitorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or MonitorConfig()
        self._clock = clock
        self._monotonic = monotonic
        self._sampler = GpuSampler(
            backend,
            retry_interval_s=self.config.retry_interval_s,
            clock=clock,
            monotonic=monotonic,
        )
        self._oom = OomDetector(self.config.oom_free_epsilon_bytes, self.config.oom_near_full_ratio)
        self._latest = NOT_SAMPLED
        self._seq = 0
        self._history: dict[str, DeviceHistory] = {}
        self._labels: dict[str, str] = {}
        self._prev_available = False
        self._events: deque[OomEvent] = deque(maxlen=self.config.oom_events_kept)
        self._oom_by_device: dict[str, int] = {}
        self._polls = 0
        self._unavailable_polls = 0
        self._last_poll_s = 0.0
        self._changed = ChangeNotifier()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._loop_error_logged: str | None = None
        interval = max(self.config.interval_s, 1e-3)
        self._usage_size = math.ceil(self.config.stability_window_s / interval) + 64

    # --- reads -----------------------------------------------------------------------------

    @property
    def latest(self) -> GpuStatus:
        return self._latest

    @property
    def sequence(self) -> int:
        """How many samples were recorded (0 before the first)."""
        return self._seq

    def history(self, device_key: str) -> list[Sample]:
        """The recent samples of one device (by UUID, see ``DeviceReading.key``), oldest first."""
        h = self._history.get(device_key)
        return list(h.samples) if h else []

    def oom_events(self) -> list[OomEvent]:
        """Detected OOM events, newest first (bounded)."""
        return list(reversed(self._events))

    def oom_count(self, device_key: str | None = None) -> int:
        if device_key is None:
            return sum(self._oom_by_device.values())
        return self._oom_by_device.get(device_key, 0)

    def metrics_snapshot(self) -> GpuMetricsSnapshot:
        return GpuMetricsSnapshot(
            status=self._latest,
            polls_total=self._polls,
            unavailable_polls_total=self._unavailable_polls,
            oom_events_total=self.oom_count(),
            oom_events_by_device=dict(self._oom_by_device),
            last_poll_seconds=self._last_poll_s,
        )

    def usage_windows(self, window_s: float) -> list[UsageWindow]:
        """Per device with samples: its allocated memory over the last ``window_s`` seconds,
        the OOM events in it and how much of it was observed."""
        now = self._clock()
        t0 = now - window_s
        gap = 3 * self.config.interval_s
        out: list[UsageWindow] = []
        for key, h in self._history.items():
            points = h.usage_since(t0, anchor=True)
            if not points:
                continue
            last = h.last
            out.append(
                UsageWindow(
                    device=self._labels[key],
                    device_key=key,
                    total_bytes=last.memory_total_bytes if last else None,
                    points=tuple(points),
                    inside=tuple(p for p in points if p[0] >= t0),
                    oom_events=sum(1 for e in self._events if e.device_key == key and e.time >= t0),
                    covered_s=coverage(points, window_s, now, gap) * window_s,
                )
            )
        return out

    def vram_stability(self, window_s: float | None = None) -> StabilityVerdict:
        """The VRAM criterion over the last ``window_s`` seconds (default: the configured
        window): see :mod:`control_service.gpu.stability`."""
        window = self.config.stability_window_s if window_s is None else window_s
        windows = self.usage_windows(window)
        return evaluate(
            {w.device: w.points for w in windows},
            {w.device: w.oom_events for w in windows},
            window_s=window,
            now=self._clock(),
            gap_limit_s=3 * self.config.interval_s,
            thresholds=self.config.stability,
            unavailable_reason=self._latest.reason,
        )

    # --- polling ---------------------------------------------------------------------------

    def poll_once(self) -> GpuStatus:
        """Sample and record synchronously (no event loop needed)."""
        started = self._monotonic()
        status = self._sampler.sample()
        self._last_poll_s = self._monotonic() - started
        self.record(status)
        return status

    def record(self, status: GpuStatus) -> None:
        """Add one sample: history, OOM detection, watchers."""
        self._polls += 1
        if not status.available:
            self._unavailable_polls += 1
        else:
            for d in status.devices:
                h = self._history.get(d.key)
                if h is None:
                    h = self._history[d.key] = DeviceHistory(
                        self.config.history_size, self._usage_size
                    )
                self._labels[d.key] = f"GPU {d.index} ({d.name or d.key})"
                # After a gap (telemetry was down) the previous reading says nothing about now.
                prev = h.last if self._prev_available else None
                event = self._oom.observe(prev, d, status.sampled_at)
                if event is not None:
                    self._events.append(event)
                    self._oom_by_device[d.key] = self._oom_by_device.get(d.key, 0) + 1
                    log.warning("GPU %d: OOM event (%s): %s", d.index, event.kind, event.detail)
                h.add(status.sampled_at, d)
        self._prev_available = status.available
        self._latest = status
        self._seq += 1
        self._changed.notify()

    async def start(self, first_sample_timeout_s: float = 5.0) -> None:
        """Start the poll loop and wait (at most ``first_sample_timeout_s``) for its first
        sample, so the first GetGpuStatus has data; a hanging driver does not block start."""
        if self._task is not None:
            return
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name="gpu-monitor")
        try:
            async with asyncio.timeout(first_sample_timeout_s):
                await self._changed.wait_for(lambda: self._seq > 0)
        except TimeoutError:
            log.warning("GPU telemetry: no first sample within %gs", first_sample_timeout_s)

    async def stop(self) -> None:
        """Stop polling, end every :meth:`updates` iterator and release the backend."""
        self._stopped = True
        self._changed.notify()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._sampler.close)

    async def _run(self) -> None:
        while not self._stopped:
            started = self._monotonic()
            try:
                status = await asyncio.to_thread(self._sampler.sample)
                self._last_poll_s = self._monotonic() - started
                self.record(status)
            except Exception as exc:
                # The loop must never die (ray serve's control loop); log each new fault once.
                if repr(exc) != self._loop_error_logged:
                    self._loop_error_logged = repr(exc)
                    log.error("GPU poll failed", exc_info=True)
            elapsed = self._monotonic() - started
            await asyncio.sleep(max(0.0, self.config.interval_s - elapsed))

    async def updates(self) -> AsyncIterator[GpuStatus]:
        """The latest sample at once (once there is one), then each new one, until stopped. A
        slow consumer skips to the newest sample instead of queueing."""
        seen = 0
        while True:
            if self._seq > seen:
                seen = self._seq
                yield self._latest
                continue
            if self._stopped:
                return
            await self._changed.wait()
