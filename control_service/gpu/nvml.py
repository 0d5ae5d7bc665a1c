"""NVML through nvidia-ml-py (``import pynvml``) behind the ``GpuBackend`` protocol.

Imports nothing but the standard library at module import: ``pynvml`` is imported by
:meth:`NvmlBackend.init`, so ``scripts/gpu_check.py`` runs with only python3, nvidia-ml-py and
this repository (no grpc, no pydantic), and a machine without nvidia-ml-py reports "not
installed" instead of failing to import.

Error handling (protocols.md section 5):

* ``nvmlInit``: ``NVMLError_LibraryNotFound`` (no driver installed, i.e. no GPU) and
  ``NVMLError_DriverNotLoaded`` become :class:`GpuUnavailable` with a plain reason.
* Per metric: any other ``NVMLError`` (``NotSupported``, ``NoPermission``, ...) makes that one
  metric absent, with NVML's message as the reason; the rest of the device is still read.
* Fatal codes (``GpuIsLost``, ``Unknown``, ``Uninitialized``, ...) on any call become
  :class:`GpuLost`: the poller reports telemetry unavailable and re-initialises later.
* Memory: ``nvmlDeviceGetMemoryInfo(h, version=nvmlMemory_v2)`` (``used`` excludes the driver's
  reserved memory); on ``FunctionNotFound`` / ``ArgumentVersionMismatch`` / ``NotSupported``, or
  bindings without ``nvmlMemory_v2``, v1 (``used`` includes reserved) from then on.
* Processes: the unversioned ``nvmlDeviceGetComputeRunningProcesses`` calls ``_v3`` and raises
  ``NVMLLibraryMismatchError`` (a plain ``Exception``, not an ``NVMLError``) on drivers without
  it; then ``_v2`` from then on. ``usedGpuMemory`` may be None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from control_service.gpu.backend import GpuLost, GpuUnavailable
from control_service.gpu.readings import DeviceReading, GpuProcess

log = logging.getLogger(__name__)

T = TypeVar("T")

# NVML_VALUE_NOT_AVAILABLE_ulonglong: bindings older than the None conversion return it as is.
_NOT_AVAILABLE_ULL = 2**64 - 1

# Codes after which nothing NVML says can be trusted until it is initialised again.
_FATAL_ERRORS = (
    "NVMLError_GpuIsLost",
    "NVMLError_Unknown",
    "NVMLError_Uninitialized",
    "NVMLError_DriverNotLoaded",
    "NVMLError_LibraryNotFound",
    "NVMLError_LibRmVersionMismatch",
    "NVMLError_ResetRequired",
    "NVMLError_GpuNotFound",
)
# v2 memory is not there: fall back to v1.
_NO_MEMORY_V2 = (
    "NVMLError_FunctionNotFound",
    "NVMLError_ArgumentVersionMismatch",
    "NVMLError_NotSupported",
)


class _Never(Exception):
    """Stands in for an exception class the bindings do not define (never raised)."""


def _text(value: Any) -> str:
    """Very old bindings return ``bytes`` for names and UUIDs."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    """Reads GPUs through NVML. ``nvml`` is the bindings module (default: ``import pynvml`` at
    :meth:`init`); tests pass a :class:`~control_service.gpu.fake.FakeNvml`."""

    def __init__(self, nvml: Any = None) -> None:
        self._injected = nvml
        self._nvml: Any = None
        self._error: type[Exception] = _Never
        self._fatal: tuple[type[Exception], ...] = ()
        self._no_v2: tuple[type[Exception], ...] = ()
        self._mismatch: type[Exception] = _Never
        # Learned once per process: the driver lacks v2 memory / _v3 processes.
        self._memory_v2: bool = True
        self._processes_v2: bool = False

    # --- lifecycle -------------------------------------------------------------------------

    def _load(self) -> Any:
        if self._injected is not None:
            return self._injected
        try:
            import pynvml
        except ImportError as exc:
            raise GpuUnavailable(
                "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            ) from exc
        return pynvml

    def init(self) -> None:
        nvml = self._load()
        error: type[Exception] = nvml.NVMLError
        self._error = error
        self._fatal = tuple(getattr(nvml, n) for n in _FATAL_ERRORS if hasattr(nvml, n))
        self._no_v2 = tuple(getattr(nvml, n) for n in _NO_MEMORY_V2 if hasattr(nvml, n))
        self._mismatch = getattr(nvml, "NVMLLibraryMismatchError", _Never)
        try:
            nvml.nvmlInit()
        except error as exc:
            raise GpuUnavailable(self._init_reason(nvml, exc)) from exc
        self._nvml = nvml

    @staticmethod
    def _init_reason(nvml: Any, exc: Exception) -> str:
        if isinstance(exc, getattr(nvml, "NVMLError_LibraryNotFound", _Never)):
            return f"no GPU: NVML library not found, no NVIDIA driver installed ({exc})"
        if isinstance(exc, getattr(nvml, "NVMLError_DriverNotLoaded", _Never)):
            return f"no GPU: NVIDIA driver not loaded ({exc})"
        return f"NVML initialisation failed: {exc}"

    def shutdown(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        try:
            nvml.nvmlShutdown()
        except self._error as exc:
            log.debug("nvmlShutdown failed: %s", exc)

    def _lib(self) -> Any:
        if self._nvml is None:
            raise GpuUnavailable("NVML is not initialised")
        return self._nvml

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` with fatal NVML errors turned into :class:`GpuLost`; others propagate."""
        try:
            return fn()
        except self._fatal as exc:
            raise GpuLost(f"{what}: {exc}") from exc

    def driver_version(self) -> str:
        nvml = self._nvml
        if nvml is None:
            return ""
        try:
            return _text(nvml.nvmlSystemGetDriverVersion())
        except self._error:
            return ""

    def device_count(self) -> int:
        nvml = self._lib()
        try:
            return int(self._call("device count", nvml.nvmlDeviceGetCount))
        except self._error as exc:
            raise GpuLost(f"device count: {exc}") from exc

    # --- reading ---------------------------------------------------------------------------

    def read(self, index: int) -> DeviceReading:
        nvml = self._lib()
        gpu = f"GPU {index}"
        try:
            handle = self._call(gpu, lambda: nvml.nvmlDeviceGetHandleByIndex(index))
        except self._error as exc:
            raise GpuLost(f"{gpu}: {exc}") from exc
        absent: dict[str, str] = {}

        def metric(name: str, fn: Callable[[], T]) -> T | None:
            try:
                return self._call(gpu, fn)
            except self._error as exc:
                absent[name] = str(exc)
                return None

        name = metric("name", lambda: _text(nvml.nvmlDeviceGetName(handle)))
        uuid = metric("uuid", lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
        memory = self._memory(gpu, handle, absent)
        util = metric("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        temp = metric(
            "temperature",
            lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        )
        draw = metric("power_draw", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        limit = metric("power_limit", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
        processes = self._processes(gpu, handle, absent)
        return DeviceReading(
            index=index,
            name=name or "",
            uuid=uuid or "",
            memory_total_bytes=memory[0],
            memory_used_bytes=memory[1],
            memory_free_bytes=memory[2],
            memory_reserved_bytes=memory[3],
            memory_api=memory[4],
            utilization_gpu_percent=int(util.gpu) if util is not None else None,
            utilization_memory_percent=int(util.memory) if util is not None else None,
            temperature_celsius=temp,
            power_draw_watts=draw,
            power_limit_watts=limit,
            processes=processes,
            absent=absent,
        )

    def _memory(
        self, gpu: str, handle: Any, absent: dict[str, str]
    ) -> tuple[int | None, int | None, int | None, int | None, str]:
        nvml = self._lib()
        if self._memory_v2:
            version = getattr(nvml, "nvmlMemory_v2", None)
            if version is None:
                self._no_memory_v2("the bindings have no nvmlMemory_v2")
            else:
                try:
                    m = self._call(
                        gpu, lambda: nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
                    )
                except TypeError as exc:  # bindings whose call takes no version argument
                    self._no_memory_v2(str(exc))
                except self._no_v2 as exc:
                    self._no_memory_v2(str(exc))
                except self._error as exc:
                    absent["memory"] = str(exc)
                    return None, None, None, None, ""
                else:
                    reserved = getattr(m, "reserved", None)
                    return int(m.total), int(m.used), int(m.free), _opt_int(reserved), "v2"
        try:
            m = self._call(gpu, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        except self._error as exc:
            absent["memory"] = str(exc)
            return None, None, None, None, ""
        return int(m.total), int(m.used), int(m.free), None, "v1"

    def _no_memory_v2(self, why: str) -> None:
        self._memory_v2 = False
        log.info("NVML memory v2 unavailable (%s): using v1, whose 'used' includes reserved", why)

    def _processes(
        self, gpu: str, handle: Any, absent: dict[str, str]
    ) -> tuple[GpuProcess, ...] | None:
        nvml = self._lib()
        try:
            if self._processes_v2:
                raw = self._call(gpu, lambda: nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle))
            else:
                try:
                    raw = self._call(gpu, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle))
                except self._mismatch as exc:
                    # Not an NVMLError (protocols.md 5): the driver has no _v3; use _v2.
                    if not hasattr(nvml, "nvmlDeviceGetComputeRunningProcesses_v2"):
                        absent["processes"] = str(exc)
                        return None
                    log.info("NVML has no _v3 process list (%s): using _v2", exc)
                    self._processes_v2 = True
                    raw = self._call(
                        gpu, lambda: nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle)
                    )
        except self._error as exc:
            absent["processes"] = str(exc)
            return None
        except self._mismatch as exc:
            absent["processes"] = str(exc)
            return None
        return tuple(
            GpuProcess(int(p.pid), _opt_int(getattr(p, "usedGpuMemory", None))) for p in raw
        )


def _opt_int(value: Any) -> int | None:
    if value is None or int(value) == _NOT_AVAILABLE_ULL:
        return None
    return int(value)
