#!/usr/bin/env python3
"""Check the control service's GPU telemetry against nvidia-smi on a real GPU.

Reads every GPU through the same code the control service runs (``NvmlBackend`` polled by
``GpuMonitor``), then asks ``nvidia-smi --query-gpu=...`` and compares each reading: exact for
names, UUIDs, total memory and the power limit, with tolerances for moving values (memory use,
utilisation, temperature, power draw). Needs only python3, nvidia-ml-py and this repository:

    PYTHONPATH=. python3 scripts/gpu_check.py [--samples 3] [--interval 0.5]

Exit status: 0 every reading matches; 1 a mismatch; 2 no GPU (NVML unavailable: no driver,
no device, GPU lost); 3 cannot compare (nvidia-smi missing or failing, device sets differ);
4 nvidia-ml-py is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_service.gpu.monitor import GpuMonitor, MonitorConfig
from control_service.gpu.nvml import NvmlBackend
from control_service.gpu.readings import MIB, DeviceReading, GpuStatus

EXIT_OK, EXIT_MISMATCH, EXIT_NO_GPU, EXIT_CANNOT_COMPARE, EXIT_NO_BINDINGS = 0, 1, 2, 3, 4

SMI_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
    "power.limit",
)
SMI_QUERY = [
    "nvidia-smi",
    f"--query-gpu={','.join(SMI_FIELDS)}",
    "--format=csv,noheader,nounits",
]
SMI_APPS = [
    "nvidia-smi",
    "--query-compute-apps=gpu_uuid,pid,used_memory",
    "--format=csv,noheader,nounits",
]


@dataclass
class Row:
    gpu: int
    field: str
    nvml: str
    smi: str
    verdict: str  # "ok", "MISMATCH", "absent", "info"


def run_smi(cmd: list[str]) -> list[list[str]]:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


def smi_number(text: str) -> float | None:
    """nvidia-smi's value, None for ``[N/A]`` / ``[Not Supported]`` / ``[Unknown Error]``."""
    try:
        return float(text)
    except ValueError:
        return None


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:.0f} MiB"


def compare_device(d: DeviceReading, smi: dict[str, str]) -> list[Row]:
    rows: list[Row] = []

    def exact(field: str, ours: str, theirs: str) -> None:
        rows.append(Row(d.index, field, ours, theirs, "ok" if ours == theirs else "MISMATCH"))

    def near(field: str, ours: float | None, key: str, tol: float, fmt: str = "{:.1f}") -> None:
        theirs = smi_number(smi[key])
        a = "-" if ours is None else fmt.format(ours)
        b = smi[key] if theirs is None else fmt.format(theirs)
        if ours is None and theirs is None:
            verdict = "absent"  # both say not supported
        elif ours is None or theirs is None:
            verdict = "MISMATCH"
        else:
            verdict = "ok" if abs(ours - theirs) <= tol else "MISMATCH"
        rows.append(Row(d.index, field, a, b, f"{verdict} (±{fmt.format(tol)})"))

    exact("name", d.name, smi["name"])
    exact("uuid", d.uuid, smi["uuid"])
    total = d.memory_total_bytes
    near("memory.total MiB", None if total is None else total / MIB, "memory.total", 1.0, "{:.0f}")
    # Moving: 1 % of the card or 64 MiB. nvidia-smi's "used" excludes reserved on current
    # drivers (like NVML v2); older ones include it (like v1): accept either.
    tol = max(64.0, 0.01 * (total or 0) / MIB)
    used = d.memory_used_bytes
    theirs_used = smi_number(smi["memory.used"])
    if used is not None and theirs_used is not None and d.memory_reserved_bytes is not None:
        with_reserved = used + d.memory_reserved_bytes
        if abs(with_reserved / MIB - theirs_used) < abs(used / MIB - theirs_used):
            used = with_reserved
    near("memory.used MiB", None if used is None else used / MIB, "memory.used", tol, "{:.0f}")
    free = d.memory_free_bytes
    near("memory.free MiB", None if free is None else free / MIB, "memory.free", tol, "{:.0f}")
    near("utilization.gpu %", d.utilization_gpu_percent, "utilization.gpu", 25.0, "{:.0f}")
    near("temperature.gpu C", d.temperature_celsius, "temperature.gpu", 3.0, "{:.0f}")
    draw = d.power_draw_watts
    theirs_draw = smi_number(smi["power.draw"]) or 0.0
    near("power.draw W", draw, "power.draw", max(15.0, 0.15 * theirs_draw))
    near("power.limit W", d.power_limit_watts, "power.limit", 1.0)
    rows.append(
        Row(
            d.index,
            "memory api / reserved",
            f"{d.memory_api or '-'} / {mib(d.memory_reserved_bytes)}",
            "",
            "info",
        )
    )
    for metric, why in sorted(d.absent.items()):
        rows.append(Row(d.index, f"absent: {metric}", why, "", "info"))
    return rows


def compare_processes(status: GpuStatus, apps: list[list[str]]) -> list[Row]:
    """Informational: the compute processes each side sees (they come and go between calls)."""
    rows: list[Row] = []
    for d in status.devices:
        ours = (
            "absent"
            if d.processes is None
            else ", ".join(f"{p.pid}:{mib(p.used_memory_bytes)}" for p in d.processes) or "none"
        )
        theirs = ", ".join(f"{a[1]}:{a[2]} MiB" for a in apps if a and a[0] == d.uuid) or "none"
        rows.append(Row(d.index, "processes (pid:mem)", ours, theirs, "info"))
    return rows


def print_rows(rows: list[Row]) -> None:
    headers = ("GPU", "FIELD", "NVML (control service)", "nvidia-smi", "VERDICT")
    cells = [(str(r.gpu), r.field, r.nvml, r.smi, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    for line in (headers, *cells):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=3, help="polls to take (default 3)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
    args = p.parse_args(argv)
    # The telemetry's own log lines (availability changes, v1 fallbacks), marked as such.
    logging.basicConfig(level=logging.INFO, format="gpu_check: log: %(message)s")

    if importlib.util.find_spec("pynvml") is None:
        print("gpu_check: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
        return EXIT_NO_BINDINGS
    monitor = GpuMonitor(NvmlBackend(), MonitorConfig(interval_s=args.interval))
    status = monitor.poll_once()
    for _ in range(max(0, args.samples - 1)):
        time.sleep(args.interval)
        status = monitor.poll_once()
        if not status.available:
            break
    if not status.available:
        print(f"gpu_check: no GPU (telemetry unavailable): {status.reason}")
        return EXIT_NO_GPU
    # nvidia-smi right after the last poll, so the moving values are close in time.
    if shutil.which("nvidia-smi") is None:
        print("gpu_check: cannot compare: nvidia-smi not found on PATH")
        return EXIT_CANNOT_COMPARE
    try:
        smi_rows = run_smi(SMI_QUERY)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"gpu_check: cannot compare: nvidia-smi failed: {exc}")
        return EXIT_CANNOT_COMPARE
    try:
        apps = run_smi(SMI_APPS)
    except (subprocess.SubprocessError, OSError):
        apps = []
    smi = {int(r[0]): dict(zip(SMI_FIELDS, r, strict=False)) for r in smi_rows if len(r) == 10}
    print(
        f"driver {status.driver_version}; {len(status.devices)} GPU(s) via NVML, "
        f"{len(smi)} via nvidia-smi; {monitor.sequence} poll(s), "
        f"last {monitor.metrics_snapshot().last_poll_seconds * 1000:.1f} ms; "
        f"OOM events {monitor.oom_count()}"
    )
    if sorted(smi) != [d.index for d in status.devices]:
        print(f"gpu_check: cannot compare: device indexes differ: {sorted(smi)}")
        return EXIT_CANNOT_COMPARE
    rows = [row for d in status.devices for row in compare_device(d, smi[d.index])]
    rows += compare_processes(status, apps)
    print_rows(rows)
    bad = [r for r in rows if r.verdict.startswith("MISMATCH")]
    stability = monitor.vram_stability(window_s=args.samples * args.interval)
    print(f"vram stability over the check: {stability.verdict} ({stability.reason})")
    if bad:
        print(f"gpu_check: {len(bad)} mismatch(es)")
        return EXIT_MISMATCH
    print("gpu_check: every reading matches nvidia-smi")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
