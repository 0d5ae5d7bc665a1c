"""scripts/gpu_check.py: the comparison with nvidia-smi, and "no GPU" on a machine without one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from control_service.gpu import MIB, DeviceReading, GpuProcess, GpuStatus, GpuUnavailable
from control_service.gpu.nvml import NvmlBackend

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules.
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


H100 = DeviceReading(
    index=0,
    name="NVIDIA H100 80GB HBM3",
    uuid="GPU-534fd7f8",
    memory_total_bytes=81559 * MIB,
    memory_used_bytes=20469 * MIB,
    memory_free_bytes=60610 * MIB,
    memory_reserved_bytes=480 * MIB,
    memory_api="v2",
    utilization_gpu_percent=99,
    utilization_memory_percent=50,
    temperature_celsius=59,
    power_draw_watts=683.9,
    power_limit_watts=700.0,
    processes=(GpuProcess(430, 20460 * MIB),),
)
SMI = {
    "index": "0",
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-534fd7f8",
    "memory.total": "81559",
    "memory.used": "20469",
    "memory.free": "60611",
    "utilization.gpu": "100",
    "temperature.gpu": "59",
    "power.draw": "684.90",
    "power.limit": "700.00",
}


def verdicts(gpu_check: ModuleType, d: DeviceReading, smi: dict[str, str]) -> dict[str, str]:
    return {r.field: r.verdict.split()[0] for r in gpu_check.compare_device(d, smi)}


def test_matching_readings(gpu_check: ModuleType) -> None:
    v = verdicts(gpu_check, H100, SMI)
    assert {k: x for k, x in v.items() if x != "info"} == {
        "name": "ok",
        "uuid": "ok",
        "memory.total MiB": "ok",
        "memory.used MiB": "ok",
        "memory.free MiB": "ok",
        "utilization.gpu %": "ok",
        "temperature.gpu C": "ok",
        "power.draw W": "ok",
        "power.limit W": "ok",
    }


def test_mismatches_and_absent_metrics(gpu_check: ModuleType) -> None:
    wrong = replace(H100, memory_used_bytes=30000 * MIB, power_limit_watts=None)
    v = verdicts(gpu_check, wrong, SMI)
    assert (v["memory.used MiB"], v["power.limit W"]) == ("MISMATCH", "MISMATCH")
    both_absent = {**SMI, "power.limit": "[N/A]"}
    assert verdicts(gpu_check, wrong, both_absent)["power.limit W"] == "absent"
    # An older nvidia-smi whose "used" includes reserved memory still matches.
    old_smi = {**SMI, "memory.used": str(20469 + 480)}
    assert verdicts(gpu_check, H100, old_smi)["memory.used MiB"] == "ok"


def test_processes_are_listed_for_both_sides(gpu_check: ModuleType) -> None:
    status = GpuStatus(True, "", 1.0, (H100,))
    [row] = gpu_check.compare_processes(status, [["GPU-534fd7f8", "430", "20460"]])
    assert (row.nvml, row.smi, row.verdict) == ("430:20460 MiB", "430:20460 MiB", "info")


def test_without_a_gpu_it_says_so_and_exits_2() -> None:
    try:
        NvmlBackend().init()
    except GpuUnavailable:
        pass
    else:  # pragma: no cover - a machine with a GPU
        pytest.skip("this machine has an NVIDIA GPU")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--samples", "1"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("gpu_check: no GPU (telemetry unavailable): no GPU: ")
