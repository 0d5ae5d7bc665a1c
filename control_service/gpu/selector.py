"""VRAM-aware model selection (the seed's ``ModelSelector``, section 2.2) and the fit check of
task-model changes. Plain functions over the desired state and a GPU sample: no grpc.

Selection: the candidates are the task's configured model followed by its fallback chain
(transitively, in order, without repeats): the models an operator already vetted for the task.
``whole_catalog`` widens them to every catalogue model of the task's kind (embedding or
generation). A candidate must be served by the engine and have a known size for it; the chosen
one is the largest whose size is at most

    limit = min(budget, max free memory of one GPU - headroom)

(either term left out when unknown; ties go to the earlier candidate). Without telemetry and
without a budget there is nothing to select against: :class:`NoLimit`.

Fit check: a change that routes a task to a model fails when, for an engine that would serve
the task, the model is larger than the largest GPU's *total* memory less the headroom. Total,
not free: the engine unloads the previous model (free memory is for choosing what to load now,
total is for refusing what can never load).
"""

from __future__ import annotations

from dataclasses import dataclass

from control_service.gpu.readings import GB, GpuStatus
from control_service.state import (
    COMPONENT_TASKS,
    Catalog,
    ComponentProvider,
    DesiredState,
    ModelEntry,
)
from llmcore.vocabulary import ProviderName, TaskName

_TASK_FLAG: dict[TaskName, str] = {task: flag for flag, task in COMPONENT_TASKS.items()}


class NoLimit(Exception):
    """Neither a budget nor GPU telemetry: no limit to select against."""


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str
    vram_bytes: int
    fits: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    task: TaskName
    engine: ProviderName
    model: str | None
    reason: str
    candidates: tuple[Candidate, ...]
    limit_bytes: int
    budget_bytes: int | None
    free_bytes: int | None
    headroom_bytes: int
    gpu_available: bool
    gpu_reason: str
    current_model: str


@dataclass(frozen=True, slots=True)
class FitViolation:
    """A task's model does not fit on the GPU for ``engine``."""

    task: TaskName
    model: str
    engine: ProviderName
    required_bytes: int
    capacity_bytes: int
    total_bytes: int
    headroom_bytes: int

    @property
    def message(self) -> str:
        return (
            f"{self.model} needs {_gb(self.required_bytes)} on {self.engine} but the GPU has "
            f"{_gb(self.total_bytes)} ({_gb(self.capacity_bytes)} after "
            f"{_gb(self.headroom_bytes)} headroom) for task {self.task}"
        )


def _gb(n: int) -> str:
    return f"{n / GB:.1f} GB"


def vram_bytes(entry: ModelEntry, engine: ProviderName) -> int:
    """The model's size for ``engine`` (0: unknown)."""
    return entry.ollama_vram_bytes if engine == "ollama" else entry.vllm_vram_bytes


def chain(catalog: Catalog, model: str) -> list[ModelEntry]:
    """``model`` and its fallbacks, depth first in order, without repeats or unknown names."""
    out: list[ModelEntry] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = catalog.model(name)
        if entry is None:
            return
        out.append(entry)
        for fb in entry.fallbacks:
            visit(fb)

    visit(model)
    return out


def candidates_for(catalog: Catalog, task: TaskName, whole_catalog: bool) -> list[ModelEntry]:
    current = catalog.model_for(task) or ""
    if not whole_catalog:
        return chain(catalog, current)
    embedding = task == "embedding"
    return [m for m in catalog.models if m.embedding == embedding]


def _pinned(state: DesiredState, task: TaskName) -> ProviderName | None:
    """The engine ``task``'s component flag pins it to, if any."""
    flag = _TASK_FLAG.get(task)
    value: ComponentProvider = getattr(state.flags, flag) if flag else "primary"
    if value == "ollama":
        return "ollama"
    if value == "vllm":
        return "vllm"
    return None


def serving_engine(state: DesiredState, task: TaskName) -> ProviderName:
    """The engine that answers ``task`` now: its pinned component provider, vLLM in
    PHASE_PRIMARY (traffic 100 %), else the primary provider."""
    pinned = _pinned(state, task)
    if pinned is not None:
        return pinned
    if state.migration.vllm_traffic_percent >= 100:
        return "vllm"
    return state.flags.primary_provider or "ollama"


def engines_for_task(state: DesiredState, task: TaskName) -> list[ProviderName]:
    """Every engine that may be asked to serve ``task`` under the state: the pinned one, or the
    primary provider plus vLLM while it takes traffic plus the shadow provider while shadowing.
    (The fallback provider is left out: it only answers when the chosen engine fails.)"""
    pinned = _pinned(state, task)
    if pinned is not None:
        return [pinned]
    out: list[ProviderName] = []

    def add(p: ProviderName | None) -> None:
        if p is not None and p not in out:
            out.append(p)

    add(state.flags.primary_provider)
    if state.migration.vllm_traffic_percent > 0:
        add("vllm")
    if state.flags.shadow_enabled:
        add(state.flags.shadow_provider)
    return out


def select_model(
    state: DesiredState,
    task: TaskName,
    gpu: GpuStatus,
    *,
    headroom_bytes: int,
    budget_bytes: int | None = None,
    engine: ProviderName | None = None,
    whole_catalog: bool = False,
) -> Selection:
    """The largest candidate that fits (see the module docstring); raises :class:`NoLimit`."""
    engine = engine or serving_engine(state, task)
    free = gpu.max_free_bytes
    limits: list[int] = []
    if budget_bytes is not None:
        limits.append(budget_bytes)
    if free is not None:
        limits.append(max(0, free - headroom_bytes))
    if not limits:
        raise NoLimit(
            f"GPU telemetry is unavailable ({gpu.reason}) and no budget was given: "
            "pass a budget to select without telemetry"
        )
    limit = min(limits)
    candidates: list[Candidate] = []
    for entry in candidates_for(state.catalog, task, whole_catalog):
        size = vram_bytes(entry, engine)
        if not entry.engine_name(engine):
            candidates.append(Candidate(entry.name, size, False, f"not served by {engine}"))
        elif size <= 0:
            candidates.append(Candidate(entry.name, 0, False, f"size on {engine} unknown"))
        elif size <= limit:
            candidates.append(Candidate(entry.name, size, True, f"{_gb(size)} <= {_gb(limit)}"))
        else:
            candidates.append(Candidate(entry.name, size, False, f"{_gb(size)} > {_gb(limit)}"))
    fitting = [c for c in candidates if c.fits]
    best = max(fitting, key=lambda c: c.vram_bytes, default=None)
    parts = []
    if budget_bytes is not None:
        parts.append(f"budget {_gb(budget_bytes)}")
    if free is not None:
        parts.append(f"free {_gb(free)} - headroom {_gb(headroom_bytes)}")
    limit_text = f"limit {_gb(limit)} = min({', '.join(parts)})" if parts else ""
    if best is None:
        reason = f"no candidate fits on {engine}: {limit_text}"
    else:
        reason = f"largest of {len(fitting)} fitting candidate(s) on {engine}: {limit_text}"
    return Selection(
        task=task,
        engine=engine,
        model=best.model if best else None,
        reason=reason,
        candidates=tuple(candidates),
        limit_bytes=limit,
        budget_bytes=budget_bytes,
        free_bytes=free,
        headroom_bytes=headroom_bytes,
        gpu_available=free is not None,
        gpu_reason=gpu.reason,
        current_model=state.catalog.model_for(task) or "",
    )


def fit_violations(
    state: DesiredState, task: TaskName, gpu: GpuStatus, *, headroom_bytes: int
) -> list[FitViolation]:
    """Why ``task``'s model in ``state`` cannot fit on the GPU (empty when it can, when its
    size is unknown, or when telemetry is unavailable)."""
    total = gpu.max_total_bytes
    model = state.catalog.model_for(task)
    entry = state.catalog.model(model) if model else None
    if total is None or entry is None:
        return []
    capacity = max(0, total - headroom_bytes)
    out: list[FitViolation] = []
    for engine in engines_for_task(state, task):
        size = vram_bytes(entry, engine)
        if entry.engine_name(engine) and size > capacity:
            out.append(
                FitViolation(task, entry.name, engine, size, capacity, total, headroom_bytes)
            )
    return out
