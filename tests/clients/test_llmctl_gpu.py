"""``llmctl gpu`` and ``llmctl models`` run in-process (in a worker thread) against a real
control service on 127.0.0.1:0 whose GPU is the shipped fake device set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.cli.main import main
from control_service.app import ControlApp, start_control
from control_service.gpu import GB, MIB, GpuBackend
from control_service.gpu.fake import FakeDevice, FakeNvml, fake_backend
from control_service.settings import ControlSettings

DEVICE = FakeDevice(
    name="NVIDIA TITAN RTX",
    uuid="GPU-titan",
    total=24 * GB,
    used=6 * GB,
    reserved=0,
    utilization_gpu=40,
    temperature=60,
    power_mw=120_000,
    processes=[(4242, 6 * GB)],
    unsupported={"power_limit": "NotSupported"},
)


@dataclass
class Control:
    app: ControlApp
    http: httpx.AsyncClient
    nvml: FakeNvml

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    async def close(self) -> None:
        await self.app.stop(0)
        await self.http.aclose()


async def start(db: Path, backend: GpuBackend, nvml: FakeNvml) -> Control:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    settings = ControlSettings(
        host="127.0.0.1",
        port=0,
        db_path=db,
        grace_period_s=0.5,
        ollama_base_url="http://ollama.test",
        vllm_base_url="http://vllm.test",
        gpu_poll_interval_s=0.05,
        insecure=True,
    )
    app = await start_control(settings, http_client=http, gpu_backend=backend)
    return Control(app, http, nvml)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMCTL_CONTROL", "LLMCTL_TOKEN", "LLMCTL_TARGET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMCTL_TOKEN_FILE", "")  # not a make-run token lying in .run/


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Control]:
    backend, nvml = fake_backend(DEVICE)
    c = await start(tmp_path / "control.db", backend, nvml)
    yield c
    await c.close()


@pytest.fixture
async def no_gpu(tmp_path: Path) -> AsyncIterator[Control]:
    backend, nvml = fake_backend(init_error="LibraryNotFound")
    c = await start(tmp_path / "control.db", backend, nvml)
    yield c
    await c.close()


async def llmctl(control: Control, *argv: str) -> int:
    return await asyncio.to_thread(main, ["--timeout", "10", *argv, "--control", control.target])


async def llmctl_json(
    control: Control, capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0
) -> dict[str, Any]:
    code = await llmctl(control, *argv, "-o", "json")
    out, err = capsys.readouterr()
    assert (code, err) == (status, ""), err
    document: dict[str, Any] = json.loads(out)
    return document


async def test_gpu_json_has_every_reading_and_nulls_for_absent(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = await llmctl_json(control, capsys, "gpu")
    assert (doc["available"], doc["reason"], doc["oom_events_total"]) == (True, "", 0)
    assert doc["driver_version"] == "550.127.05"
    assert doc["sampled_at"].endswith("+00:00")
    [d] = doc["devices"]
    assert d == {
        "index": 0,
        "name": "NVIDIA TITAN RTX",
        "uuid": "GPU-titan",
        "memory_total_bytes": 24 * GB,
        "memory_used_bytes": 6 * GB,
        "memory_free_bytes": 18 * GB,
        "memory_reserved_bytes": 0,
        "utilization_gpu_percent": 40,
        "utilization_memory_percent": 0,
        "temperature_celsius": 60,
        "power_draw_watts": 120.0,
        "power_limit_watts": None,
        "memory_api": "v2",
        "processes": [{"pid": 4242, "used_memory_bytes": 6 * GB}],
        "absent_metrics": {"power_limit": "Not Supported"},
        "oom_events": 0,
    }


async def test_gpu_table(control: Control, capsys: pytest.CaptureFixture[str]) -> None:
    assert await llmctl(control, "gpu") == 0
    out = capsys.readouterr().out
    assert "GPU telemetry  available (driver 550.127.05" in out
    assert "6.0/24.0 GB (25%)" in out
    assert "120.0/- W" in out
    assert "4242" in out
    assert "GPU 0: power_limit absent (Not Supported)" in out


async def test_gpu_without_a_gpu(no_gpu: Control, capsys: pytest.CaptureFixture[str]) -> None:
    doc = await llmctl_json(no_gpu, capsys, "gpu")
    assert doc["available"] is False
    assert doc["reason"].startswith("no GPU: NVML library not found")
    assert doc["devices"] == []
    assert await llmctl(no_gpu, "gpu") == 0
    assert "unavailable: no GPU: NVML library not found" in capsys.readouterr().out


async def test_gpu_watch_prints_one_document_per_poll(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await llmctl(control, "gpu", "--watch", "--watch-count", "2", "-o", "json")
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) == 2
    assert docs[1]["sampled_at"] > docs[0]["sampled_at"]


async def test_models_lists_the_catalogue_with_sizes(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = await llmctl_json(control, capsys, "models")
    by_name = {m["name"]: m for m in doc["models"]}
    qwen = by_name["qwen3:8b"]
    assert (qwen["ollama_vram_bytes"], qwen["vllm_vram_bytes"]) == (int(5.2 * GB), int(16.4 * GB))
    assert qwen["tasks"] == ["analysis"]
    assert by_name["mxbai-embed-large"]["embedding"] is True
    assert await llmctl(control, "models") == 0
    out = capsys.readouterr().out
    assert "qwen3:8b" in out
    assert "16.4 GB" in out


async def test_models_task_selects_with_budget(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = await llmctl_json(control, capsys, "models", "--task", "synthesis", "--budget-gb", "6")
    assert (doc["task"], doc["engine"], doc["model"]) == ("synthesis", "ollama", "qwen3:8b")
    assert doc["budget_bytes"] == 6 * GB
    assert doc["limit_bytes"] == 6 * GB
    assert doc["free_bytes"] == 18 * GB
    assert doc["gpu_available"] is True
    assert doc["current_model"] == "deepseek-r1:14b"
    assert [(c["model"], c["fits"]) for c in doc["candidates"]] == [
        ("deepseek-r1:14b", False),
        ("qwen3:8b", True),
        ("llama3.2:3b", True),
        ("gemma3:4b", True),
    ]
    # Free memory - headroom (18 - 1.5) is the limit without a budget.
    doc = await llmctl_json(control, capsys, "models", "--task", "synthesis")
    assert (doc["model"], doc["limit_bytes"], doc["budget_bytes"]) == (
        "deepseek-r1:14b",
        int(16.5 * GB),
        None,
    )
    assert await llmctl(control, "models", "--task", "reflection", "--all") == 0
    out = capsys.readouterr().out
    assert "chosen  deepseek-r1:14b" in out


async def test_models_nothing_fits_exits_1(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = await llmctl_json(
        control, capsys, "models", "--task", "analysis", "--budget-gb", "1", status=1
    )
    assert doc["model"] is None


async def test_models_without_gpu_needs_a_budget(
    no_gpu: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(no_gpu, "models", "--task", "analysis") == 3
    err = capsys.readouterr().err
    assert "GPU telemetry is unavailable" in err
    assert "--budget-gb" in err
    doc = await llmctl_json(no_gpu, capsys, "models", "--task", "analysis", "--budget-gb", "2.5")
    assert (doc["model"], doc["gpu_available"]) == ("llama3.2:3b", False)


async def test_models_budget_without_task_is_a_usage_error(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control, "models", "--budget-gb", "4") == 2
    assert "need --task" in capsys.readouterr().err


def test_gpu_memory_units_are_decimal_gb() -> None:
    from clients.cli._gpu import gb

    assert gb(24 * GB) == "24.0 GB"
    assert gb(24576 * MIB) == "25.8 GB"
    assert gb(None) == "-"
