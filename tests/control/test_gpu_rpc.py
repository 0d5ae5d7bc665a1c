"""GetGpuStatus, WatchGpuStatus, SelectModel and SetTaskModel over a real control service on
127.0.0.1:0, with the fake device set injected through ``start_control(gpu_backend=...)``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from control_service.app import ControlApp, start_control
from control_service.gpu import GB, MIB, GpuBackend
from control_service.gpu.fake import FakeDevice, FakeNvml, fake_backend
from tests.control.conftest import error_info, make_settings, meta, violations

P = control_pb2


@dataclass
class GpuControl:
    app: ControlApp
    channel: grpc.aio.Channel
    stub: control_pb2_grpc.ControlServiceAsyncStub
    nvml: FakeNvml | None
    http: httpx.AsyncClient

    async def close(self) -> None:
        await self.channel.close()
        await self.app.stop(0)
        await self.http.aclose()


async def start_gpu(
    db: Path, backend: GpuBackend, nvml: FakeNvml | None = None, **overrides: Any
) -> GpuControl:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    settings = make_settings(db, **{"gpu_poll_interval_s": 0.05, **overrides})
    app = await start_control(settings, http_client=http, gpu_backend=backend)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return GpuControl(app, channel, control_pb2_grpc.ControlServiceStub(channel), nvml, http)


TITAN = FakeDevice(
    name="NVIDIA TITAN RTX",
    uuid="GPU-titan",
    total=24 * GB,
    used=5 * GB,
    reserved=300 * MIB,
    utilization_gpu=55,
    utilization_memory=20,
    temperature=64,
    power_mw=180_500,
    power_limit_mw=280_000,
    processes=[(4242, 5 * GB), (99, None)],
    unsupported={"power_limit": "NotSupported"},
)


@pytest.fixture
async def gpu(db: Path) -> AsyncIterator[GpuControl]:
    backend, nvml = fake_backend(TITAN)
    c = await start_gpu(db, backend, nvml)
    yield c
    await c.close()


@pytest.fixture
async def no_gpu(db: Path) -> AsyncIterator[GpuControl]:
    backend, nvml = fake_backend(init_error="LibraryNotFound")
    c = await start_gpu(db, backend, nvml)
    yield c
    await c.close()


async def test_get_gpu_status_reports_every_reading(gpu: GpuControl) -> None:
    s = (await gpu.stub.GetGpuStatus(P.GetGpuStatusRequest())).status
    assert (s.available, s.unavailable_reason, s.driver_version) == (True, "", "550.127.05")
    assert s.sampled_at.seconds > 0
    assert s.poll_interval_seconds == pytest.approx(0.05)
    [d] = s.devices
    assert (d.index, d.name, d.uuid, d.memory_api) == (0, "NVIDIA TITAN RTX", "GPU-titan", "v2")
    assert d.memory_total_bytes == 24 * GB
    assert d.memory_used_bytes == 5 * GB
    assert d.memory_reserved_bytes == 300 * MIB
    assert d.memory_free_bytes == 24 * GB - 5 * GB - 300 * MIB
    assert (d.utilization_gpu_percent, d.utilization_memory_percent) == (55, 20)
    assert d.temperature_celsius == 64
    assert d.power_draw_watts == pytest.approx(180.5)
    # Unsupported: absent (not 0), with the reason.
    assert not d.HasField("power_limit_watts")
    assert dict(d.absent_metrics) == {"power_limit": "Not Supported"}
    assert [(p.pid, p.HasField("used_memory_bytes")) for p in d.processes] == [
        (4242, True),
        (99, False),
    ]
    assert d.processes[0].used_memory_bytes == 5 * GB
    assert (d.oom_events, s.oom_events_total) == (0, 0)


async def test_no_gpu_is_reported_unavailable_with_the_reason(no_gpu: GpuControl) -> None:
    s = (await no_gpu.stub.GetGpuStatus(P.GetGpuStatusRequest())).status
    assert not s.available
    assert s.unavailable_reason.startswith("no GPU: NVML library not found")
    assert list(s.devices) == []
    # The rest of the service works.
    state = await no_gpu.stub.GetState(P.GetStateRequest())
    assert state.snapshot.version == 1


async def test_watch_gpu_status_streams_an_update_per_poll(gpu: GpuControl) -> None:
    assert gpu.nvml is not None
    call = gpu.stub.WatchGpuStatus(P.WatchGpuStatusRequest())
    first = await call.read()
    assert isinstance(first, P.WatchGpuStatusResponse)
    gpu.nvml.update(0, used=7 * GB)
    second = first
    # The next polls carry the change (a poll may have started before the update).
    for _ in range(5):
        msg = await call.read()
        assert isinstance(msg, P.WatchGpuStatusResponse)
        second = msg
        if second.status.devices[0].memory_used_bytes == 7 * GB:
            break
    assert second.status.devices[0].memory_used_bytes == 7 * GB
    assert second.status.sampled_at.ToNanoseconds() > first.status.sampled_at.ToNanoseconds()
    call.cancel()


async def test_watch_ends_cleanly_when_the_service_stops(db: Path) -> None:
    backend, nvml = fake_backend()
    c = await start_gpu(db, backend, nvml, gpu_poll_interval_s=60.0)
    call = c.stub.WatchGpuStatus(P.WatchGpuStatusRequest())
    assert isinstance(await call.read(), P.WatchGpuStatusResponse)
    await c.app.stop(5)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    await c.channel.close()
    await c.http.aclose()


async def test_oom_events_are_counted_and_reported(gpu: GpuControl) -> None:
    assert gpu.nvml is not None
    call = gpu.stub.WatchGpuStatus(P.WatchGpuStatusRequest())
    await call.read()
    gpu.nvml.update(0, used=24 * GB - 300 * MIB - 100 * MIB)
    status = None
    for _ in range(10):
        msg = await call.read()
        assert isinstance(msg, P.WatchGpuStatusResponse)
        status = msg.status
        if status.oom_events_total:
            break
    call.cancel()
    assert status is not None
    assert status.oom_events_total == 1
    assert status.devices[0].oom_events == 1
    [event] = status.recent_oom_events
    assert (event.kind, event.device_index) == ("memory_full", 0)


async def test_catalogue_carries_vram_sizes(gpu: GpuControl) -> None:
    state = await gpu.stub.GetState(P.GetStateRequest())
    qwen = next(m for m in state.snapshot.catalog.models if m.name == "qwen3:8b")
    assert (qwen.ollama_vram_bytes, qwen.vllm_vram_bytes) == (int(5.2 * GB), int(16.4 * GB))


async def test_select_model(gpu: GpuControl) -> None:
    r = await gpu.stub.SelectModel(P.SelectModelRequest(task=common_pb2.TASK_SYNTHESIS))
    # free = 24 - 5 - 0.3 GiB-ish = 18.7 GB, headroom 1.5: deepseek-r1:14b (9 GB) fits.
    assert (r.model, r.provider, r.current_model) == (
        "deepseek-r1:14b",
        common_pb2.PROVIDER_OLLAMA,
        "deepseek-r1:14b",
    )
    assert r.gpu_available
    assert r.headroom_bytes == int(1.5 * GB)
    assert r.free_bytes == 24 * GB - 5 * GB - 300 * MIB
    assert not r.HasField("budget_bytes")
    assert [c.model for c in r.candidates][:2] == ["deepseek-r1:14b", "qwen3:8b"]
    r = await gpu.stub.SelectModel(
        P.SelectModelRequest(
            task=common_pb2.TASK_SYNTHESIS,
            budget_bytes=6 * GB,
            provider=common_pb2.PROVIDER_VLLM,
        )
    )
    # vLLM fp16: Llama-3.2-3B (6.4 GB) is over the budget; gemma-3-4b 8.6 GB too: none.
    assert (r.model, r.limit_bytes, r.budget_bytes) == ("", 6 * GB, 6 * GB)
    assert r.reason.startswith("no candidate fits on vllm")


async def test_select_model_refuses_an_unspecified_task(gpu: GpuControl) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SelectModel(P.SelectModelRequest())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["task"]


async def test_select_model_without_gpu_needs_a_budget(no_gpu: GpuControl) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await no_gpu.stub.SelectModel(P.SelectModelRequest(task=common_pb2.TASK_ANALYSIS))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc.value)
    assert (info.reason, info.metadata["field"]) == ("GPU_TELEMETRY_UNAVAILABLE", "budget_bytes")
    r = await no_gpu.stub.SelectModel(
        P.SelectModelRequest(task=common_pb2.TASK_ANALYSIS, budget_bytes=3 * GB)
    )
    assert (r.model, r.gpu_available) == ("llama3.2:3b", False)
    assert r.gpu_unavailable_reason.startswith("no GPU")


def precondition_subjects(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)
    out: list[str] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            out.extend(v.subject for v in pf.violations)
    return out


async def test_set_task_model_refuses_a_model_that_cannot_fit(gpu: GpuControl) -> None:
    request = P.SetTaskModelRequest(
        meta=meta(), task=common_pb2.TASK_ANALYSIS, model="llama3.3:70b"
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SetTaskModel(request)
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(exc.value)
    assert info.reason == "VRAM_INSUFFICIENT"
    assert (info.metadata["field"], info.metadata["model"], info.metadata["engine"]) == (
        "model",
        "llama3.3:70b",
        "ollama",
    )
    assert precondition_subjects(exc.value) == ["model"]
    assert "needs 43.0 GB on ollama" in (exc.value.details() or "")
    state = await gpu.stub.GetState(P.GetStateRequest())
    assert state.snapshot.version == 1


async def test_set_task_model_accepts_a_model_that_fits(gpu: GpuControl) -> None:
    r = await gpu.stub.SetTaskModel(
        P.SetTaskModelRequest(meta=meta(), task=common_pb2.TASK_ANALYSIS, model="deepseek-r1:14b")
    )
    tm = {t.task: t.model for t in r.snapshot.catalog.task_models}
    assert tm[common_pb2.TASK_ANALYSIS] == "deepseek-r1:14b"
    assert r.snapshot.version == 2
    events = await gpu.stub.ListEvents(P.ListEventsRequest())
    assert events.events[0].action == "set_task_model"


async def test_forced_set_task_model_is_audited_and_needs_a_reason(gpu: GpuControl) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SetTaskModel(
            P.SetTaskModelRequest(
                meta=meta(reason=""),
                task=common_pb2.TASK_ANALYSIS,
                model="llama3.3:70b",
                force=True,
            )
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["meta.reason"]
    r = await gpu.stub.SetTaskModel(
        P.SetTaskModelRequest(
            meta=meta(reason="offloading to CPU on purpose"),
            task=common_pb2.TASK_ANALYSIS,
            model="llama3.3:70b",
            force=True,
        )
    )
    assert r.snapshot.version == 2
    [event, *_] = (await gpu.stub.ListEvents(P.ListEventsRequest())).events
    assert (event.action, event.reason) == ("force_set_task_model", "offloading to CPU on purpose")
    assert json.loads(event.after_json) == {"catalog.task_models": _task_models_after(r)}


def _task_models_after(r: P.SetTaskModelResponse) -> list[list[str]]:
    names = {v: k for k, v in common_pb2.Task.items()}
    return [
        [names[t.task].removeprefix("TASK_").lower(), t.model]
        for t in r.snapshot.catalog.task_models
    ]


async def test_set_task_model_without_telemetry_skips_the_fit_check(no_gpu: GpuControl) -> None:
    r = await no_gpu.stub.SetTaskModel(
        P.SetTaskModelRequest(meta=meta(), task=common_pb2.TASK_ANALYSIS, model="llama3.3:70b")
    )
    assert r.snapshot.version == 2


async def test_set_task_model_validates_the_whole_config(gpu: GpuControl) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SetTaskModel(
            P.SetTaskModelRequest(meta=meta(), task=common_pb2.TASK_ANALYSIS, model="nope")
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["catalog.task_models[1].model"]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SetTaskModel(
            P.SetTaskModelRequest(
                meta=meta(), task=common_pb2.TASK_ANALYSIS, model="mxbai-embed-large"
            )
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await gpu.stub.SetTaskModel(P.SetTaskModelRequest(meta=meta(), model="qwen3:8b"))
    assert violations(exc.value) == ["task"]


async def test_settings_fake_backend_and_off(tmp_path: Path) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    for backend, available in (("fake", True), ("off", False)):
        settings = make_settings(tmp_path / f"{backend}.db", gpu_backend=backend)
        app = await start_control(settings, http_client=http)
        try:
            status = app.gpu.latest
            assert status.available is available
            if not available:
                assert "switched off" in status.reason
        finally:
            await app.stop(0)
    await http.aclose()
