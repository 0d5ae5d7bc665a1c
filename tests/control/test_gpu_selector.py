"""VRAM-aware model selection and the fit check, with plain data (no server)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from control_service.gpu import GB, DeviceReading, GpuStatus
from control_service.gpu.selector import (
    NoLimit,
    engines_for_task,
    fit_violations,
    select_model,
    serving_engine,
)
from control_service.gpu_service import with_task_model
from control_service.model_sizes import DEFAULT_VRAM_BYTES
from control_service.state import DesiredState, Migration, Phase, default_state, from_dict, to_dict

HEADROOM = int(1.5 * GB)


def gpu(free: int, total: int = 24 * GB) -> GpuStatus:
    return GpuStatus(True, "", 1.0, (DeviceReading(0, "gpu", "GPU-0", total, total - free, free),))


NO_GPU = GpuStatus(False, "no GPU: NVML library not found", 1.0)


def sizes(state: DesiredState) -> dict[str, tuple[int, int]]:
    return {m.name: (m.ollama_vram_bytes, m.vllm_vram_bytes) for m in state.catalog.models}


def test_default_catalogue_carries_per_engine_sizes() -> None:
    state = default_state()
    assert sizes(state)["qwen3:8b"] == (int(5.2 * GB), int(16.4 * GB))
    assert sizes(state)["mxbai-embed-large"] == (int(0.67 * GB), int(0.67 * GB))
    assert set(sizes(state)) == set(DEFAULT_VRAM_BYTES)
    assert all(o > 0 and v >= o for o, v in sizes(state).values())


def test_sizes_survive_the_store_format_and_old_documents_get_defaults() -> None:
    state = default_state()
    assert from_dict(to_dict(state)) == state
    old = to_dict(state)
    for m in old["catalog"]["models"]:
        del m["ollama_vram_bytes"], m["vllm_vram_bytes"]
    assert sizes(from_dict(old)) == sizes(state)


def test_chooses_the_largest_of_the_chain_that_fits_free_minus_headroom() -> None:
    state = default_state()
    # synthesis: deepseek-r1:14b (9.0) -> qwen3:8b (5.2) -> llama3.2:3b (2.0), gemma3:4b (3.3)
    s = select_model(state, "synthesis", gpu(free=8 * GB), headroom_bytes=HEADROOM)
    assert (s.engine, s.model, s.limit_bytes) == ("ollama", "qwen3:8b", int(6.5 * GB))
    assert [c.model for c in s.candidates] == [
        "deepseek-r1:14b",
        "qwen3:8b",
        "llama3.2:3b",
        "gemma3:4b",
    ]
    assert [c.fits for c in s.candidates] == [False, True, True, True]
    assert s.candidates[0].reason == "9.0 GB > 6.5 GB"
    assert s.current_model == "deepseek-r1:14b"
    assert (s.free_bytes, s.gpu_available) == (8 * GB, True)
    assert "free 8.0 GB - headroom 1.5 GB" in s.reason


def test_a_model_that_exactly_fits_is_chosen() -> None:
    state = default_state()
    exact = int(9.0 * GB) + HEADROOM
    s = select_model(state, "synthesis", gpu(free=exact), headroom_bytes=HEADROOM)
    assert s.model == "deepseek-r1:14b"
    assert s.limit_bytes == int(9.0 * GB)
    s = select_model(state, "synthesis", gpu(free=exact - 1), headroom_bytes=HEADROOM)
    assert s.model == "qwen3:8b"


def test_headroom_is_what_excludes_a_model() -> None:
    state = default_state()
    free = int(9.5 * GB)
    assert select_model(state, "synthesis", gpu(free), headroom_bytes=0).model == "deepseek-r1:14b"
    assert select_model(state, "synthesis", gpu(free), headroom_bytes=HEADROOM).model == "qwen3:8b"


def test_budget_and_free_memory_the_smaller_wins() -> None:
    state = default_state()
    s = select_model(
        state, "synthesis", gpu(free=20 * GB), headroom_bytes=HEADROOM, budget_bytes=3 * GB
    )
    assert (s.model, s.limit_bytes, s.budget_bytes) == ("llama3.2:3b", 3 * GB, 3 * GB)
    s = select_model(
        state, "synthesis", gpu(free=5 * GB), headroom_bytes=HEADROOM, budget_bytes=20 * GB
    )
    assert (s.model, s.limit_bytes) == ("gemma3:4b", int(3.5 * GB))


def test_without_telemetry_the_budget_alone_limits() -> None:
    s = select_model(
        default_state(), "analysis", NO_GPU, headroom_bytes=HEADROOM, budget_bytes=int(5.2 * GB)
    )
    assert (s.model, s.free_bytes, s.gpu_available) == ("qwen3:8b", None, False)
    assert s.gpu_reason == NO_GPU.reason
    with pytest.raises(NoLimit, match="no budget"):
        select_model(default_state(), "analysis", NO_GPU, headroom_bytes=HEADROOM)


def test_nothing_fits() -> None:
    s = select_model(default_state(), "analysis", gpu(free=2 * GB), headroom_bytes=HEADROOM)
    assert s.model is None
    assert s.reason.startswith("no candidate fits on ollama")


def test_vllm_sizes_are_fp16_and_the_engine_can_be_named() -> None:
    state = default_state()
    s = select_model(state, "synthesis", gpu(free=20 * GB), headroom_bytes=HEADROOM, engine="vllm")
    # 29.6 GB deepseek does not fit; Qwen3-8B fp16 16.4 GB does.
    assert (s.engine, s.model) == ("vllm", "qwen3:8b")


def test_whole_catalogue_of_the_task_kind() -> None:
    state = default_state()
    s = select_model(
        state, "reflection", gpu(free=24 * GB), headroom_bytes=HEADROOM, whole_catalog=True
    )
    # The chain of gemma3:4b is itself only; the whole catalogue offers qwen3:30b-a3b (19 GB).
    assert s.model == "qwen3:30b-a3b"
    assert "mxbai-embed-large" not in [c.model for c in s.candidates]
    chain_only = select_model(state, "reflection", gpu(free=24 * GB), headroom_bytes=HEADROOM)
    assert [c.model for c in chain_only.candidates] == ["gemma3:4b"]
    emb = select_model(
        state, "embedding", gpu(free=24 * GB), headroom_bytes=HEADROOM, whole_catalog=True
    )
    assert [c.model for c in emb.candidates] == ["mxbai-embed-large"]


def test_unknown_size_and_unserved_models_never_fit() -> None:
    state = default_state()
    models = tuple(
        replace(m, ollama_vram_bytes=0)
        if m.name == "qwen3:8b"
        else replace(m, ollama_name="")
        if m.name == "llama3.2:3b"
        else m
        for m in state.catalog.models
    )
    state = replace(state, catalog=replace(state.catalog, models=models))
    s = select_model(state, "analysis", gpu(free=24 * GB), headroom_bytes=HEADROOM)
    reasons = {c.model: c.reason for c in s.candidates}
    assert reasons["qwen3:8b"] == "size on ollama unknown"
    assert reasons["llama3.2:3b"] == "not served by ollama"
    assert s.model == "gemma3:4b"


def test_serving_engine_and_engines_for_task() -> None:
    state = default_state()
    assert serving_engine(state, "synthesis") == "ollama"
    # The seed pins embeddings to Ollama.
    assert engines_for_task(state, "embedding") == ["ollama"]
    primary = replace(state, migration=Migration(phase=Phase.PRIMARY, split_weight_percent=100))
    assert serving_engine(primary, "synthesis") == "vllm"
    assert engines_for_task(primary, "synthesis") == ["ollama", "vllm"]
    shadow = replace(state, flags=replace(state.flags, shadow_enabled=True))
    assert engines_for_task(shadow, "reflection") == ["ollama", "vllm"]
    pinned = replace(state, flags=replace(state.flags, analysis_provider="vllm"))
    assert serving_engine(pinned, "analysis") == "vllm"
    assert engines_for_task(pinned, "analysis") == ["vllm"]


def test_fit_violations_use_total_memory_and_only_engines_that_serve_the_task() -> None:
    state = with_task_model(default_state(), "analysis", "llama3.3:70b")
    [v] = fit_violations(state, "analysis", gpu(free=24 * GB), headroom_bytes=HEADROOM)
    assert (v.model, v.engine, v.required_bytes) == ("llama3.3:70b", "ollama", 43 * GB)
    assert v.capacity_bytes == 24 * GB - HEADROOM
    assert "needs 43.0 GB on ollama" in v.message
    # deepseek-r1:14b fits Ollama (9 GB) even with little free memory: total is what counts.
    state = with_task_model(default_state(), "analysis", "deepseek-r1:14b")
    assert fit_violations(state, "analysis", gpu(free=1 * GB), headroom_bytes=HEADROOM) == []
    # ...but not vLLM fp16 once vLLM takes traffic.
    split = replace(state, migration=Migration(phase=Phase.SPLIT, split_weight_percent=10))
    [v] = fit_violations(split, "analysis", gpu(free=24 * GB), headroom_bytes=HEADROOM)
    assert (v.engine, v.required_bytes) == ("vllm", int(29.6 * GB))
    # Exactly the capacity fits.
    assert (
        fit_violations(
            split,
            "analysis",
            gpu(free=0, total=int(29.6 * GB) + HEADROOM),
            headroom_bytes=HEADROOM,
        )
        == []
    )
    # No telemetry: no check.
    assert fit_violations(split, "analysis", NO_GPU, headroom_bytes=HEADROOM) == []


def test_with_task_model_replaces_or_adds() -> None:
    state = default_state()
    new = with_task_model(state, "analysis", "gemma3:4b")
    assert new.catalog.model_for("analysis") == "gemma3:4b"
    assert len(new.catalog.task_models) == len(state.catalog.task_models)
    missing = replace(state, catalog=replace(state.catalog, task_models=()))
    assert with_task_model(missing, "analysis", "qwen3:8b").catalog.task_models == (
        ("analysis", "qwen3:8b"),
    )
