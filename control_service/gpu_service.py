"""The GPU RPCs' domain logic: telemetry reads, model selection and the VRAM-checked task-model
change. Plain Python (no grpc): the servicer translates protos and errors.

``SetTaskModel`` is the one change that routes a task to another model, so it carries the fit
check (:func:`control_service.gpu.selector.fit_violations`): refused with
:class:`PreconditionFailed` (``VRAM_INSUFFICIENT``, subject ``model``) when telemetry is
available and the model cannot fit for an engine that would serve the task, unless ``force``
(which needs a reason and is audited as ``force_set_task_model``).
"""

from __future__ import annotations

from dataclasses import replace

from control_service.controller import Controller
from control_service.errors import FieldViolation, InvalidChange, PreconditionFailed
from control_service.gpu.backend import DisabledBackend, GpuBackend
from control_service.gpu.fake import demo_backend
from control_service.gpu.monitor import GpuMonitor, MonitorConfig, UsageWindow
from control_service.gpu.nvml import NvmlBackend
from control_service.gpu.readings import GB, MIB
from control_service.gpu.selector import NoLimit, Selection, fit_violations, select_model
from control_service.gpu.stability import StabilityThresholds
from control_service.rollback.gate import VramObservation
from control_service.settings import ControlSettings
from control_service.state import ChangeMeta, DesiredState, Snapshot
from llmcore.vocabulary import ProviderName, TaskName


def with_task_model(state: DesiredState, task: TaskName, model: str) -> DesiredState:
    """``state`` with ``task`` assigned to ``model``."""
    pairs = state.catalog.task_models
    if any(t == task for t, _ in pairs):
        task_models = tuple((t, model if t == task else m) for t, m in pairs)
    else:
        task_models = (*pairs, (task, model))
    return replace(state, catalog=replace(state.catalog, task_models=task_models))


class GpuService:
    """Reads go to the :class:`GpuMonitor`; the change goes through the :class:`Controller`."""

    def __init__(self, monitor: GpuMonitor, controller: Controller, *, headroom_bytes: int) -> None:
        self.monitor = monitor
        self._controller = controller
        self.headroom_bytes = headroom_bytes

    def select(
        self,
        task: TaskName,
        *,
        budget_bytes: int | None = None,
        engine: ProviderName | None = None,
        whole_catalog: bool = False,
    ) -> Selection:
        try:
            return select_model(
                self._controller.current.state,
                task,
                self.monitor.latest,
                headroom_bytes=self.headroom_bytes,
                budget_bytes=budget_bytes,
                engine=engine,
                whole_catalog=whole_catalog,
            )
        except NoLimit as exc:
            raise PreconditionFailed(
                str(exc), reason="GPU_TELEMETRY_UNAVAILABLE", subject="budget_bytes"
            ) from exc

    async def set_task_model(
        self, meta: ChangeMeta, task: TaskName, model: str, *, force: bool = False
    ) -> Snapshot:
        if force and not meta.reason.strip():
            raise InvalidChange(
                [FieldViolation("meta.reason", "required with force (recorded in the audit log)")]
            )
        gpu = self.monitor.latest

        def change(state: DesiredState) -> DesiredState:
            new = with_task_model(state, task, model)
            if new == state or force:
                return new
            bad = fit_violations(new, task, gpu, headroom_bytes=self.headroom_bytes)
            if bad:
                first = bad[0]
                raise PreconditionFailed(
                    "; ".join(v.message for v in bad) + " (force to override)",
                    reason="VRAM_INSUFFICIENT",
                    subject="model",
                    metadata={
                        "model": first.model,
                        "engine": first.engine,
                        "required_bytes": str(first.required_bytes),
                        "capacity_bytes": str(first.capacity_bytes),
                    },
                )
            return new

        action = "force_set_task_model" if force else "set_task_model"
        return await self._controller.change(action, meta, change)


class MonitorVramSource:
    """The go/no-go gate's :class:`~control_service.rollback.gonogo.VramSource` over the GPU
    monitor's history. None without samples in the window (no telemetry). With several GPUs:
    the device whose allocated memory grew most (as a share of its memory), the least covered
    time and the OOM events of all of them."""

    def __init__(self, monitor: GpuMonitor) -> None:
        self._monitor = monitor

    async def vram(self, window_s: float) -> VramObservation | None:
        windows = [w for w in self._monitor.usage_windows(window_s) if w.inside]
        if not windows:
            return None

        def growth(w: UsageWindow) -> float:
            return (w.inside[-1][1] - w.inside[0][1]) / max(w.total_bytes or 1, 1)

        worst = max(windows, key=growth)
        return VramObservation(
            covered_s=min(w.covered_s for w in windows),
            samples=len(worst.inside),
            first_used_bytes=worst.inside[0][1],
            last_used_bytes=worst.inside[-1][1],
            peak_used_bytes=max(u for _, u in worst.inside),
            total_bytes=worst.total_bytes or 0,
            oom_events=sum(w.oom_events for w in windows),
        )


def monitor_config(settings: ControlSettings) -> MonitorConfig:
    """The monitor's knobs from ``ControlSettings.gpu_*``."""
    return MonitorConfig(
        interval_s=settings.gpu_poll_interval_s,
        retry_interval_s=settings.gpu_retry_interval_s,
        history_size=settings.gpu_history_size,
        stability_window_s=settings.gpu_stability_window_s,
        stability=StabilityThresholds(
            max_drift_bytes=int(settings.gpu_stability_max_drift_gb * GB),
            max_slope_bytes_per_hour=settings.gpu_stability_max_slope_gb_per_h * GB,
            min_coverage=settings.gpu_stability_min_coverage,
            min_samples=settings.gpu_stability_min_samples,
        ),
        oom_free_epsilon_bytes=int(settings.gpu_oom_free_epsilon_mb * MIB),
        oom_near_full_ratio=settings.gpu_oom_near_full_ratio,
    )


def backend_from_settings(settings: ControlSettings) -> GpuBackend:
    """``gpu_backend``: NVML, the demo fake, or off."""
    if settings.gpu_backend == "fake":
        return demo_backend()
    if settings.gpu_backend == "off":
        return DisabledBackend()
    return NvmlBackend()


def build_monitor(settings: ControlSettings, backend: GpuBackend | None = None) -> GpuMonitor:
    """The GPU monitor of the settings; ``backend`` (tests) overrides ``gpu_backend``."""
    return GpuMonitor(backend or backend_from_settings(settings), monitor_config(settings))
