"""``llmctl gpu`` and ``llmctl models``: GPU telemetry and VRAM-aware model selection, read from
the control service (GetGpuStatus / WatchGpuStatus, GetState and SelectModel).

Sizes are in decimal gigabytes (10^9 bytes), like the model sizes and ``--budget-gb``. A metric
the GPU does not support is ``-`` in tables and ``null`` in JSON, never 0.
"""

from __future__ import annotations

import argparse
from typing import Any

from clients.cli._common import Subparsers, positive_int, print_json
from clients.cli._control_common import UsageError, add_parser, error_line, run_control
from clients.cli._errors import EXIT_FAILURE, EXIT_ILLEGAL_TRANSITION
from clients.cli._output import WatchView, emit, format_pairs, format_table
from clients.cli._values import ago, enum_label, iso_time
from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from clients.llm import ControlClient, RouterError

GB = 1_000_000_000
_TASKS: dict[str, common_pb2.Task.ValueType] = {
    enum_label(common_pb2.Task.DESCRIPTOR, v.number): common_pb2.Task.ValueType(v.number)
    for v in common_pb2.Task.DESCRIPTOR.values
    if v.number
}
_ENGINES: dict[str, common_pb2.Provider.ValueType] = {
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}
GPU_EXIT_HELP = "exit status: 0 ok, 5 not authenticated, 1 other failure"
MODELS_EXIT_HELP = (
    "exit status: 0 ok (with --task: a model was chosen), 1 no candidate fits or other failure, "
    "2 usage, 3 no GPU telemetry and no --budget-gb, 5 not authenticated"
)


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"must be a size in GB, at least 0: {text}")
    return value


def register(subparsers: Subparsers) -> None:
    """Adds ``gpu`` and ``models``."""
    p = add_parser(
        subparsers,
        "gpu",
        help="show GPU telemetry (memory, utilisation, temperature, power, processes, OOMs)",
        description="The control service's latest GPU sample (NVML): per GPU memory, "
        "utilisation, temperature, power draw and limit, compute processes and detected OOM "
        "events; or why there is no telemetry. --watch prints every poll until Ctrl-C.",
    )
    p.epilog = GPU_EXIT_HELP
    p.add_argument("-w", "--watch", action="store_true", help="print every poll until Ctrl-C")
    # Stop --watch after this many prints (tests and scripts).
    p.add_argument("--watch-count", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=run_gpu)

    p = add_parser(
        subparsers,
        "models",
        help="list the model catalogue with VRAM sizes, or choose a model for a task",
        description="Without --task: every catalogue model with its size on each engine and "
        "the tasks that use it. With --task: the control service's SelectModel, the largest "
        "of the task's model and its fallbacks (--all: every model of its kind) that fits "
        "min(--budget-gb, free GPU memory - headroom).",
    )
    p.epilog = MODELS_EXIT_HELP
    p.add_argument("--task", choices=list(_TASKS), default=None, help="task to choose a model for")
    p.add_argument(
        "--budget-gb",
        type=_budget,
        default=None,
        metavar="N",
        help="largest model size to allow, in GB (10^9 bytes); with --task",
    )
    p.add_argument(
        "--engine",
        choices=list(_ENGINES),
        default=None,
        help="whose sizes apply (default: the engine serving the task now); with --task",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="consider every catalogue model of the task's kind, not only its fallback chain",
    )
    p.set_defaults(handler=run_models)


# --- formatting -----------------------------------------------------------------------------


def gb(n: int | float | None) -> str:
    return "-" if n is None else f"{n / GB:.1f} GB"


def _opt(msg: Any, name: str) -> Any:
    """An ``optional`` proto field's value, or None when absent."""
    return getattr(msg, name) if msg.HasField(name) else None


_DEVICE_METRICS = (
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_free_bytes",
    "memory_reserved_bytes",
    "utilization_gpu_percent",
    "utilization_memory_percent",
    "temperature_celsius",
    "power_draw_watts",
    "power_limit_watts",
)


def device_dict(d: control_pb2.GpuDevice) -> dict[str, Any]:
    absent = dict(d.absent_metrics)
    return {
        "index": d.index,
        "name": d.name,
        "uuid": d.uuid,
        **{name: _opt(d, name) for name in _DEVICE_METRICS},
        "memory_api": d.memory_api or None,
        "processes": None
        if "processes" in absent
        else [
            {"pid": p.pid, "used_memory_bytes": _opt(p, "used_memory_bytes")} for p in d.processes
        ],
        "absent_metrics": absent,
        "oom_events": d.oom_events,
    }


def gpu_document(s: control_pb2.GpuStatus) -> dict[str, Any]:
    return {
        "available": s.available,
        "reason": s.unavailable_reason,
        "sampled_at": iso_time(s.sampled_at),
        "driver_version": s.driver_version,
        "poll_interval_seconds": s.poll_interval_seconds,
        "oom_events_total": s.oom_events_total,
        "recent_oom_events": [
            {
                "time": iso_time(e.time),
                "device_index": e.device_index,
                "kind": e.kind,
                "detail": e.detail,
            }
            for e in s.recent_oom_events
        ],
        "devices": [device_dict(d) for d in s.devices],
    }


def _memory_cell(d: control_pb2.GpuDevice) -> str:
    used, total = _opt(d, "memory_used_bytes"), _opt(d, "memory_total_bytes")
    if used is None or total is None:
        return "-"
    return f"{used / GB:.1f}/{total / GB:.1f} GB ({100 * used / max(total, 1):.0f}%)"


def _unit(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _power_cell(d: control_pb2.GpuDevice) -> str:
    draw, limit = _opt(d, "power_draw_watts"), _opt(d, "power_limit_watts")
    if draw is None and limit is None:
        return "-"
    return f"{_unit(draw, '{:.1f}')}/{_unit(limit, '{:.1f}')} W"


def gpu_lines(s: control_pb2.GpuStatus) -> list[str]:
    if s.available:
        head = f"available (driver {s.driver_version or '?'}, sampled {ago(s.sampled_at)}"
        head += f", every {s.poll_interval_seconds:g}s)"
    else:
        head = f"unavailable: {s.unavailable_reason}"
    lines = format_pairs([("GPU telemetry", head), ("OOM events", str(s.oom_events_total))])
    if s.devices:
        rows = [
            [
                str(d.index),
                d.name or "-",
                _memory_cell(d),
                gb(_opt(d, "memory_free_bytes")),
                _unit(_opt(d, "utilization_gpu_percent"), "{}%"),
                _unit(_opt(d, "utilization_memory_percent"), "{}%"),
                _unit(_opt(d, "temperature_celsius"), "{}C"),
                _power_cell(d),
                "-" if "processes" in d.absent_metrics else str(len(d.processes)),
                str(d.oom_events),
            ]
            for d in s.devices
        ]
        headers = ["GPU", "NAME", "MEMORY USED/TOTAL", "FREE", "UTIL", "MEM UTIL", "TEMP"]
        lines += ["", *format_table([*headers, "POWER", "PROCS", "OOM"], rows)]
    procs = [
        [str(d.index), str(p.pid), gb(_opt(p, "used_memory_bytes"))]
        for d in s.devices
        for p in d.processes
    ]
    if procs:
        lines += ["", *format_table(["GPU", "PID", "MEMORY"], procs)]
    absent = [
        f"GPU {d.index}: {metric} absent ({why})"
        for d in s.devices
        for metric, why in sorted(d.absent_metrics.items())
    ]
    events = [
        f"OOM {iso_time(e.time)} GPU {e.device_index} {e.kind}: {e.detail}"
        for e in s.recent_oom_events[:5]
    ]
    if absent or events:
        lines += ["", *absent, *events]
    return lines


# --- gpu ------------------------------------------------------------------------------------


def run_gpu(args: argparse.Namespace) -> int:
    """Runs ``gpu`` (and ``gpu --watch``)."""

    async def once(client: ControlClient) -> int:
        status = await client.get_gpu_status()
        emit(args, gpu_document(status), gpu_lines(status))
        return 0

    async def watch(client: ControlClient) -> int:
        printed = 0
        with WatchView() as view:
            async for status in client.watch_gpu_status():
                if args.output == "json":
                    print_json(gpu_document(status))
                else:
                    view.show(gpu_lines(status))
                printed += 1
                if args.watch_count is not None and printed >= args.watch_count:
                    break
        return 0

    if args.watch:
        return run_control(args, watch, interrupt_ok=True)
    return run_control(args, once)


# --- models ---------------------------------------------------------------------------------


def _task_label(task: int) -> str:
    return enum_label(common_pb2.Task.DESCRIPTOR, task)


def catalog_document(catalog: control_pb2.Catalog) -> dict[str, Any]:
    tasks: dict[str, list[str]] = {}
    for tm in catalog.task_models:
        tasks.setdefault(tm.model, []).append(_task_label(tm.task))
    return {
        "models": [
            {
                "name": m.name,
                "embedding": m.embedding,
                "ollama_name": m.ollama_name,
                "vllm_name": m.vllm_name,
                "ollama_vram_bytes": m.ollama_vram_bytes,
                "vllm_vram_bytes": m.vllm_vram_bytes,
                "fallbacks": list(m.fallbacks),
                "tasks": tasks.get(m.name, []),
            }
            for m in catalog.models
        ]
    }


def _size_cell(served: str, size: int) -> str:
    if not served:
        return "-"
    return gb(size) if size else "?"


def catalog_lines(catalog: control_pb2.Catalog) -> list[str]:
    doc = catalog_document(catalog)
    rows = [
        [
            m["name"],
            "embedding" if m["embedding"] else "generation",
            _size_cell(m["ollama_name"], m["ollama_vram_bytes"]),
            _size_cell(m["vllm_name"], m["vllm_vram_bytes"]),
            ", ".join(m["tasks"]) or "-",
        ]
        for m in doc["models"]
    ]
    return [
        *format_table(["MODEL", "KIND", "OLLAMA", "VLLM (FP16)", "TASKS"], rows),
        "",
        "sizes are weights only, in GB (10^9 bytes); '-' not served, '?' unknown",
    ]


def selection_document(
    args: argparse.Namespace, r: control_pb2.SelectModelResponse
) -> dict[str, Any]:
    return {
        "task": args.task,
        "engine": enum_label(common_pb2.Provider.DESCRIPTOR, r.provider),
        "model": r.model or None,
        "reason": r.reason,
        "current_model": r.current_model,
        "limit_bytes": r.limit_bytes,
        "budget_bytes": _opt(r, "budget_bytes"),
        "free_bytes": _opt(r, "free_bytes"),
        "headroom_bytes": r.headroom_bytes,
        "gpu_available": r.gpu_available,
        "gpu_unavailable_reason": r.gpu_unavailable_reason,
        "candidates": [
            {"model": c.model, "vram_bytes": c.vram_bytes, "fits": c.fits, "reason": c.reason}
            for c in r.candidates
        ],
    }


def selection_lines(args: argparse.Namespace, r: control_pb2.SelectModelResponse) -> list[str]:
    engine = enum_label(common_pb2.Provider.DESCRIPTOR, r.provider)
    gpu = "" if r.gpu_available else f" (no GPU telemetry: {r.gpu_unavailable_reason})"
    pairs = [
        ("task", f"{args.task} (configured: {r.current_model or '-'})"),
        ("engine", engine),
        ("limit", f"{gb(r.limit_bytes)}{gpu}"),
        ("chosen", r.model or "none fits"),
        ("why", r.reason),
    ]
    rows = [
        [c.model, gb(c.vram_bytes) if c.vram_bytes else "?", "yes" if c.fits else "no", c.reason]
        for c in r.candidates
    ]
    return [*format_pairs(pairs), "", *format_table(["MODEL", "VRAM", "FITS", "WHY"], rows)]


def run_models(args: argparse.Namespace) -> int:
    """Runs ``models``."""

    async def listing(client: ControlClient) -> int:
        if args.budget_gb is not None or args.engine is not None or args.all:
            raise UsageError("--budget-gb, --engine and --all need --task")
        catalog = (await client.get_state()).snapshot.catalog
        emit(args, catalog_document(catalog), catalog_lines(catalog))
        return 0

    async def select(client: ControlClient) -> int:
        budget = None if args.budget_gb is None else round(args.budget_gb * GB)
        try:
            r = await client.select_model(
                _TASKS[args.task],
                budget_bytes=budget,
                provider=_ENGINES[args.engine] if args.engine else common_pb2.PROVIDER_UNSPECIFIED,
                whole_catalog=args.all,
            )
        except RouterError as error:
            if error.reason != "GPU_TELEMETRY_UNAVAILABLE":
                raise
            error_line(f"{error.message} (--budget-gb N)")
            return EXIT_ILLEGAL_TRANSITION
        emit(args, selection_document(args, r), selection_lines(args, r))
        return 0 if r.model else EXIT_FAILURE

    return run_control(args, select if args.task else listing)
