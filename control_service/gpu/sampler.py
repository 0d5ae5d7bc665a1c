"""One poll of every GPU through a :class:`GpuBackend`, never raising: blocking, no asyncio.

The sampler owns the backend's lifecycle: it initialises lazily, reports "unavailable, because
..." when it cannot, shuts the library down after a GPU is lost and tries again at most every
``retry_interval_s``. It logs each change of availability once (and each absent metric once per
device), so a machine without a GPU does not log every two seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from control_service.gpu.backend import GpuBackend, GpuLost, GpuUnavailable
from control_service.gpu.readings import DeviceReading, GpuStatus

log = logging.getLogger(__name__)


class GpuSampler:
    """``sample()`` returns a :class:`GpuStatus`; thread-safe (one sample at a time)."""

    def __init__(
        self,
        backend: GpuBackend,
        *,
        retry_interval_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._initialized = False
        self._next_init_at = 0.0
        self._reason = "GPU telemetry has not sampled yet"
        self._driver = ""
        # (available, reason) last logged; None before the first sample.
        self._logged: tuple[bool, str] | None = None
        self._absent_logged: set[tuple[str, str, str]] = set()

    def sample(self) -> GpuStatus:
        with self._lock:
            return self._sample()

    def close(self) -> None:
        """Shut the backend down (the next :meth:`sample` initialises it again)."""
        with self._lock:
            if self._initialized:
                self._initialized = False
                self._backend.shutdown()

    def _sample(self) -> GpuStatus:
        now = self._clock()
        if not self._initialized:
            if self._monotonic() < self._next_init_at:
                return GpuStatus(False, self._reason, now)
            try:
                self._backend.init()
            except GpuUnavailable as exc:
                return self._unavailable(exc.reason, now, lost=False)
            self._initialized = True
            self._driver = self._backend.driver_version()
        try:
            count = self._backend.device_count()
            if count == 0:
                raise GpuUnavailable("no GPU: NVML reports no devices")
            devices = tuple(self._backend.read(i) for i in range(count))
        except GpuUnavailable as exc:
            return self._unavailable(exc.reason, now, lost=isinstance(exc, GpuLost))
        except Exception as exc:
            # A bug or a binding we do not know: report it like a lost GPU, never crash the poller.
            if self._logged != (False, f"telemetry error: {exc!r}"):
                log.error("GPU telemetry failed unexpectedly", exc_info=True)
            return self._unavailable(f"telemetry error: {exc!r}", now, lost=True)
        self._changed(True, "")
        for d in devices:
            self._log_absent(d)
        return GpuStatus(True, "", now, devices, self._driver)

    def _unavailable(self, reason: str, now: float, *, lost: bool) -> GpuStatus:
        if self._initialized:
            self._initialized = False
            self._backend.shutdown()
        self._reason = reason
        self._next_init_at = self._monotonic() + self._retry_interval_s
        self._changed(False, reason, lost=lost)
        return GpuStatus(False, reason, now)

    def _changed(self, available: bool, reason: str, *, lost: bool = False) -> None:
        state = (available, reason)
        if state == self._logged:
            return
        first = self._logged is None
        self._logged = state
        if available:
            log.info("GPU telemetry available (driver %s)", self._driver or "unknown")
        elif lost:
            log.error("GPU telemetry lost: %s (retrying every %gs)", reason, self._retry_interval_s)
        elif first:
            log.warning("GPU telemetry unavailable: %s", reason)
        else:
            log.warning("GPU telemetry unavailable: %s (was: %s)", reason, "available")

    def _log_absent(self, d: DeviceReading) -> None:
        for metric, why in d.absent.items():
            key = (d.key, metric, why)
            if key not in self._absent_logged:
                self._absent_logged.add(key)
                log.info("GPU %d (%s): %s absent: %s", d.index, d.name, metric, why)
