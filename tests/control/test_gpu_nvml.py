"""The NVML backend over the shipped fake of nvidia-ml-py (and the real one, without a GPU):
every reading, absent metrics, no GPU, v2->v1 memory, the _v3 process-list mismatch."""

from __future__ import annotations

import pytest

from control_service.gpu import MIB, GpuLost, GpuUnavailable, NvmlBackend
from control_service.gpu.fake import FakeDevice, FakeNvml, fake_backend


def test_every_reading_of_a_device() -> None:
    device = FakeDevice(
        name="NVIDIA TITAN RTX",
        uuid="GPU-1234",
        total=24576 * MIB,
        used=6000 * MIB,
        reserved=300 * MIB,
        utilization_gpu=87,
        utilization_memory=41,
        temperature=71,
        power_mw=231_456,
        power_limit_mw=280_000,
        processes=[(4242, 5800 * MIB), (77, None)],
    )
    backend, nvml = fake_backend(device, driver_version="550.54.15")
    backend.init()
    assert backend.driver_version() == "550.54.15"
    assert backend.device_count() == 1
    r = backend.read(0)
    assert (r.index, r.name, r.uuid) == (0, "NVIDIA TITAN RTX", "GPU-1234")
    assert r.memory_api == "v2"
    assert r.memory_total_bytes == 24576 * MIB
    assert r.memory_used_bytes == 6000 * MIB
    assert r.memory_reserved_bytes == 300 * MIB
    assert r.memory_free_bytes == (24576 - 6000 - 300) * MIB
    assert (r.utilization_gpu_percent, r.utilization_memory_percent) == (87, 41)
    assert r.temperature_celsius == 71
    # NVML reports milliwatts.
    assert r.power_draw_watts == pytest.approx(231.456)
    assert r.power_limit_watts == pytest.approx(280.0)
    assert r.processes is not None
    assert [(p.pid, p.used_memory_bytes) for p in r.processes] == [(4242, 5800 * MIB), (77, None)]
    assert r.absent == {}
    backend.shutdown()
    assert not nvml.initialized


def test_unsupported_metrics_are_absent_not_errors() -> None:
    device = FakeDevice(
        unsupported={
            "power_draw": "NotSupported",
            "power_limit": "NotSupported",
            "temperature": "NoPermission",
            "utilization": "NotSupported",
            "processes": "NotSupported",
        }
    )
    backend, _ = fake_backend(device)
    backend.init()
    r = backend.read(0)
    assert r.power_draw_watts is None
    assert r.power_limit_watts is None
    assert r.temperature_celsius is None
    assert r.utilization_gpu_percent is None
    assert r.utilization_memory_percent is None
    assert r.processes is None
    assert r.absent == {
        "power_draw": "Not Supported",
        "power_limit": "Not Supported",
        "temperature": "Insufficient Permissions",
        "utilization": "Not Supported",
        "processes": "Not Supported",
    }
    # What is supported is still read.
    assert r.memory_total_bytes == device.total
    assert r.name == device.name


def test_memory_itself_can_be_absent() -> None:
    backend, _ = fake_backend(FakeDevice(unsupported={"memory": "NotSupported"}))
    backend.init()
    r = backend.read(0)
    assert (r.memory_total_bytes, r.memory_used_bytes, r.memory_free_bytes) == (None, None, None)
    assert (r.memory_api, r.absent["memory"], r.has_memory) == ("", "Not Supported", False)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("LibraryNotFound", "no GPU: NVML library not found"),
        ("DriverNotLoaded", "no GPU: NVIDIA driver not loaded"),
        ("Unknown", "NVML initialisation failed: Unknown Error"),
    ],
)
def test_no_gpu_at_init_is_unavailable_with_a_plain_reason(error: str, reason: str) -> None:
    backend, _ = fake_backend(init_error=error)
    with pytest.raises(GpuUnavailable) as exc:
        backend.init()
    assert exc.value.reason.startswith(reason)
    assert not isinstance(exc.value, GpuLost)


def test_the_real_bindings_without_a_gpu() -> None:
    """On a machine without an NVIDIA driver, nvidia-ml-py raises LibraryNotFound."""
    probe = NvmlBackend()
    try:
        probe.init()
    except GpuUnavailable:
        pass
    else:  # pragma: no cover - a machine with a GPU
        probe.shutdown()
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(GpuUnavailable, match=r"^no GPU: NVML library not found|not installed"):
        NvmlBackend().init()


@pytest.mark.parametrize("error", ["GpuIsLost", "Unknown"])
def test_a_lost_gpu_raises_gpu_lost(error: str) -> None:
    backend, nvml = fake_backend()
    backend.init()
    backend.read(0)
    nvml.update(0, lost=True, lost_error=error)
    with pytest.raises(GpuLost) as exc:
        backend.read(0)
    assert "GPU 0" in exc.value.reason


def test_a_fatal_error_on_one_metric_is_gpu_lost_not_absent() -> None:
    backend, _ = fake_backend(FakeDevice(unsupported={"power_draw": "GpuIsLost"}))
    backend.init()
    with pytest.raises(GpuLost, match="GPU is lost"):
        backend.read(0)


def test_memory_v2_missing_in_the_driver_falls_back_to_v1_once() -> None:
    device = FakeDevice(total=1000 * MIB, used=400 * MIB, reserved=100 * MIB)
    backend, nvml = fake_backend(device, memory_v2="function_not_found")
    backend.init()
    first = backend.read(0)
    second = backend.read(0)
    for r in (first, second):
        assert r.memory_api == "v1"
        # v1 "used" includes reserved memory; there is no separate reserved figure.
        assert r.memory_used_bytes == 500 * MIB
        assert r.memory_reserved_bytes is None
        assert r.memory_free_bytes == 500 * MIB
        assert "memory" not in r.absent
    assert nvml.calls == {"memory_v2": 1, "memory_v1": 2, "processes_v3": 2}


def test_bindings_without_nvml_memory_v2_use_v1() -> None:
    backend, nvml = fake_backend(memory_v2="no_attribute")
    backend.init()
    assert backend.read(0).memory_api == "v1"
    assert "memory_v2" not in nvml.calls


def test_processes_mismatch_error_falls_back_to_v2() -> None:
    """NVMLLibraryMismatchError is not an NVMLError: it must not escape (protocols.md 5)."""
    device = FakeDevice(processes=[(1, 10 * MIB)])
    backend, nvml = fake_backend(device, processes_v3=False)
    backend.init()
    first = backend.read(0)
    second = backend.read(0)
    assert first.processes is not None
    assert [p.pid for p in first.processes] == [1]
    assert second.processes == first.processes
    assert "processes" not in first.absent
    # _v3 was tried once; _v2 from then on.
    assert (nvml.calls["processes_v3"], nvml.calls["processes_v2"]) == (1, 2)


def test_processes_mismatch_without_v2_is_absent() -> None:
    class NoV2(FakeNvml):
        def __getattribute__(self, name: str) -> object:
            if name == "nvmlDeviceGetComputeRunningProcesses_v2":
                raise AttributeError(name)
            return super().__getattribute__(name)

    backend = NvmlBackend(NoV2([FakeDevice()], processes_v3=False))
    backend.init()
    r = backend.read(0)
    assert r.processes is None
    assert "pyNVML version does not match" in r.absent["processes"]


def test_bytes_names_from_old_bindings_are_decoded() -> None:
    class OldBindings(FakeNvml):
        def nvmlDeviceGetName(self, handle: int) -> bytes:  # type: ignore[override]
            return b"Tesla T4"

    backend = NvmlBackend(OldBindings())
    backend.init()
    assert backend.read(0).name == "Tesla T4"


def test_read_before_init_is_unavailable() -> None:
    backend, _ = fake_backend()
    with pytest.raises(GpuUnavailable):
        backend.read(0)
    backend.shutdown()  # never raises
