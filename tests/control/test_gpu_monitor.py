"""The GPU monitor over the fake device set: no GPU, a GPU lost mid-run, logging once, history,
OOM detection, the async poll loop (off the event loop) and the metrics snapshot."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import pytest

from control_service.gpu import (
    GB,
    MIB,
    DeviceReading,
    GpuMonitor,
    GpuProcess,
    GpuStatus,
    MonitorConfig,
    NvmlBackend,
)
from control_service.gpu.fake import FakeDevice, FakeNvml, fake_backend
from control_service.gpu.oom import OomDetector


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 2.0) -> None:
        self.now += seconds


def monitor(nvml: FakeNvml, clock: Clock, **config: object) -> GpuMonitor:
    cfg = MonitorConfig(**{"interval_s": 2.0, "retry_interval_s": 30.0, **config})  # type: ignore[arg-type]
    return GpuMonitor(NvmlBackend(nvml), cfg, clock=clock, monotonic=clock)


def test_no_gpu_reports_unavailable_and_retries_at_most_every_retry_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    nvml = FakeNvml(init_error="LibraryNotFound")
    m = monitor(nvml, clock)
    with caplog.at_level(logging.INFO, logger="control_service.gpu"):
        for _ in range(10):  # 20 s: one init attempt
            status = m.poll_once()
            clock.tick()
    assert not status.available
    assert status.reason.startswith("no GPU: NVML library not found")
    assert status.devices == ()
    assert nvml.init_calls == 1
    clock.tick(30)
    m.poll_once()
    assert nvml.init_calls == 2
    # Logged once, not every poll.
    assert [r.getMessage() for r in caplog.records] == [
        "GPU telemetry unavailable: no GPU: NVML library not found, no NVIDIA driver installed "
        "(NVML Shared Library Not Found)"
    ]
    assert m.metrics_snapshot().unavailable_polls_total == 11


def test_driver_not_loaded_and_zero_devices_are_unavailable() -> None:
    clock = Clock()
    status = monitor(FakeNvml(init_error="DriverNotLoaded"), clock).poll_once()
    assert status.reason.startswith("no GPU: NVIDIA driver not loaded")
    status = monitor(FakeNvml([]), clock).poll_once()
    assert (status.available, status.reason) == (False, "no GPU: NVML reports no devices")


@pytest.mark.parametrize("error", ["GpuIsLost", "Unknown"])
def test_gpu_lost_mid_run_then_recovers(error: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    nvml = FakeNvml([FakeDevice(used=1 * GB)])
    m = monitor(nvml, clock, retry_interval_s=10.0)
    with caplog.at_level(logging.INFO, logger="control_service.gpu"):
        assert m.poll_once().available
        clock.tick()
        nvml.update(0, lost=True, lost_error=error)
        lost = []
        for _ in range(3):
            lost.append(m.poll_once())
            clock.tick()
        assert all(not s.available for s in lost)
        assert "GPU 0" in lost[0].reason
        # NVML was shut down after the loss and is not re-initialised before the retry interval.
        assert (nvml.shutdown_calls, nvml.init_calls) == (1, 1)
        nvml.update(0, lost=False)
        clock.tick(10)
        back = m.poll_once()
    assert back.available
    assert nvml.init_calls == 2
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "GPU telemetry available (driver 550.127.05)"
    assert messages[1].startswith("GPU telemetry lost: GPU 0")
    assert messages[2] == "GPU telemetry available (driver 550.127.05)"
    assert len(messages) == 3


def test_an_unexpected_backend_exception_never_escapes() -> None:
    class Broken(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise RuntimeError("binding bug")

    status = monitor(Broken(), Clock()).poll_once()
    assert not status.available
    assert "RuntimeError('binding bug')" in status.reason


def test_absent_metrics_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    m = monitor(FakeNvml([FakeDevice(unsupported={"power_draw": "NotSupported"})]), clock)
    with caplog.at_level(logging.INFO, logger="control_service.gpu"):
        for _ in range(5):
            m.poll_once()
            clock.tick()
    absent = [r for r in caplog.records if "absent" in r.getMessage()]
    assert len(absent) == 1
    assert "power_draw absent: Not Supported" in absent[0].getMessage()


def test_history_is_bounded_per_device() -> None:
    clock = Clock()
    nvml = FakeNvml([FakeDevice(uuid="GPU-a"), FakeDevice(uuid="GPU-b")])
    m = monitor(nvml, clock, history_size=5)
    for i in range(12):
        nvml.update(0, used=i * GB)
        m.poll_once()
        clock.tick()
    h = m.history("GPU-a")
    assert len(h) == 5
    assert [s.reading.memory_used_bytes for s in h] == [i * GB for i in range(7, 12)]
    assert len(m.history("GPU-b")) == 5
    assert m.history("GPU-unknown") == []


# --- OOM heuristic ----------------------------------------------------------------------------


def reading(free_gb: float, *, total_gb: float = 24.0, pids: tuple[int, ...] = ()) -> DeviceReading:
    total = int(total_gb * GB)
    free = int(free_gb * GB)
    return DeviceReading(
        0,
        "gpu",
        "GPU-x",
        total,
        total - free,
        free,
        processes=tuple(GpuProcess(p, GB) for p in pids),
    )


def test_oom_memory_full_counts_once_per_episode() -> None:
    d = OomDetector(free_epsilon_bytes=256 * MIB)
    assert d.observe(None, reading(10), 0) is None
    event = d.observe(reading(10), reading(0.2), 1)
    assert event is not None
    assert event.kind == "memory_full"
    assert d.observe(reading(0.2), reading(0.1), 2) is None  # same episode
    # Leaving the episode with the process gone is the same OOM, not a second one.
    assert d.observe(reading(0.1, pids=(1,)), reading(20), 3) is None
    assert d.observe(reading(20), reading(0.0), 4) is not None  # a new episode


def test_oom_exactly_at_the_epsilon_is_full() -> None:
    d = OomDetector(free_epsilon_bytes=256 * MIB)
    exact = DeviceReading(0, "gpu", "GPU-x", 24 * GB, 24 * GB - 256 * MIB, 256 * MIB)
    assert d.observe(None, exact, 0) is not None
    above = DeviceReading(0, "gpu", "GPU-y", 24 * GB, 24 * GB - 257 * MIB, 257 * MIB)
    assert d.observe(None, above, 0) is None


def test_oom_process_vanishing_while_nearly_full() -> None:
    d = OomDetector(free_epsilon_bytes=256 * MIB, near_full_ratio=0.95)
    prev = reading(1.0, pids=(10, 11))  # 95.8 % used
    event = d.observe(prev, reading(12.0, pids=(11,)), 5)
    assert event is not None
    assert event.kind == "process_vanished"
    assert "process 10 vanished" in event.detail


def test_a_process_exiting_normally_is_not_an_oom() -> None:
    d = OomDetector(near_full_ratio=0.95)
    # 50 % used: a normal exit.
    assert d.observe(reading(12.0, pids=(10,)), reading(20.0), 5) is None
    # Nearly full but memory did not go down: not a crash freeing memory.
    assert d.observe(reading(1.0, pids=(10, 11)), reading(0.9, pids=(11,)), 6) is None
    # No process list: nothing to say.
    prev = DeviceReading(0, "gpu", "GPU-x", 24 * GB, 23 * GB, 1 * GB)
    assert d.observe(prev, reading(12.0), 7) is None


def test_monitor_counts_ooms_per_device_and_ignores_gaps() -> None:
    clock = Clock()
    device = FakeDevice(total=24 * GB, reserved=0, used=10 * GB, processes=[(7, 10 * GB)])
    nvml = FakeNvml([device])
    m = monitor(nvml, clock, retry_interval_s=0.0)
    m.poll_once()
    clock.tick()
    nvml.update(0, used=24 * GB - 100 * MIB)
    m.poll_once()
    clock.tick()
    assert m.oom_count() == 1
    assert m.oom_count(device.uuid) == 1
    [event] = m.oom_events()
    assert (event.kind, event.device_index, event.time) == ("memory_full", 0, clock.now - 2)
    # Nearly full, then the GPU is lost; when it is back the process is gone: not counted,
    # the previous reading is from before the gap.
    nvml.update(0, used=23 * GB, processes=[(7, 23 * GB)])
    m.poll_once()
    clock.tick()
    nvml.update(0, lost=True)
    m.poll_once()
    clock.tick()
    nvml.update(0, lost=False, used=1 * GB, processes=[])
    assert m.poll_once().available
    assert m.oom_count() == 1
    snap = m.metrics_snapshot()
    assert (snap.oom_events_total, snap.oom_events_by_device) == (1, {device.uuid: 1})
    assert (snap.polls_total, snap.unavailable_polls_total) == (5, 1)
    assert snap.status.available


# --- the async loop ---------------------------------------------------------------------------


class ThreadRecordingNvml(FakeNvml):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def nvmlDeviceGetCount(self) -> int:
        self.threads.add(threading.get_ident())
        return super().nvmlDeviceGetCount()


async def test_poll_loop_runs_off_the_event_loop_and_feeds_watchers() -> None:
    nvml = ThreadRecordingNvml()
    m = GpuMonitor(NvmlBackend(nvml), MonitorConfig(interval_s=0.01))
    await m.start()
    assert m.sequence >= 1
    assert m.latest.available
    seen: list[GpuStatus] = []
    async with asyncio.timeout(5):
        async for status in m.updates():
            seen.append(status)
            if len(seen) == 3:
                break
    assert len({s.sampled_at for s in seen}) == 3
    assert threading.get_ident() not in nvml.threads
    await m.stop()
    assert not nvml.initialized


async def test_updates_end_when_the_monitor_stops() -> None:
    m = GpuMonitor(fake_backend()[0], MonitorConfig(interval_s=60))
    await m.start()
    received: list[GpuStatus] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for status in m.updates():
            received.append(status)
            first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first.wait()
        await m.stop()
        await task
    assert len(received) == 1


async def test_a_failing_poll_step_does_not_kill_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    m = GpuMonitor(fake_backend()[0], MonitorConfig(interval_s=0.01))
    calls = 0
    original = m.record

    def flaky(status: GpuStatus) -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise ValueError("boom")
        original(status)

    m.record = flaky  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="control_service.gpu"):
        await m.start(first_sample_timeout_s=5)
    await m.stop()
    assert m.sequence >= 1
    assert [r.getMessage() for r in caplog.records] == ["GPU poll failed"]
