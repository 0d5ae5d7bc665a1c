"""The migration drill (``make demo``) in a reduced, fast form: the same drill logic
(``llmtools.drill``) against an in-process stack (simulators on port 0, a real control service
evaluating the rollback rules every 50 ms, one real router), shorter steps and less load."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from llmtools.drill import DrillConfig, DrillTargets, run_drill
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings
from tests.control.conftest import Control, start


@pytest.fixture
async def stack(
    tmp_path: Path,
) -> AsyncIterator[tuple[DrillTargets, RunningSimulator, Control, RouterApp]]:
    # Meaning-aware simulators, for the drill's meaning step.
    ollama = await start_simulator(
        SimConfig(
            flavor=Flavor.OLLAMA,
            num_parallel=16,
            answer_mode="concepts",
            embedding_mode="concepts",
        )
    )
    vllm = await start_simulator(
        SimConfig(flavor=Flavor.VLLM, answer_mode="concepts", embedding_mode="concepts")
    )
    control = await start(
        tmp_path / "control.db",
        transport=httpx.AsyncHTTPTransport(),
        ollama_base_url=ollama.base_url,
        vllm_base_url=vllm.base_url,
        evaluation_interval_s=0.05,
        stats_slot_s=0.5,
        probe_timeout_s=0.5,
        gonogo_window_s=5,
        gonogo_min_requests=10,
        gpu_backend="off",
        gonogo_min_meaning_pairs=10,
    )
    router = await start_router(
        RouterSettings(
            host="127.0.0.1",
            port=0,
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            control_address=control.target,
            router_id="drill-r0",
            config_cache_path=tmp_path / "router.snapshot",
            stats_report_interval_s=0.05,
            retry_base_delay_s=0.001,
            retry_max_delay_s=0.002,
            read_timeout_s=2.0,
            connect_timeout_s=0.5,
            breaker_failure_threshold=1000,
            grace_period_s=0.5,
        )
    )
    targets = DrillTargets(
        routers=[f"127.0.0.1:{router.port}"],
        control=control.target,
        ollama_url=ollama.base_url,
        vllm_url=vllm.base_url,
    )
    yield targets, vllm, control, router
    await router.stop(0)
    await control.close()
    await ollama.stop()
    await vllm.stop()


@pytest.mark.timeout(90)
async def test_reduced_drill_passes_its_expectations(
    stack: tuple[DrillTargets, RunningSimulator, Control, RouterApp],
) -> None:
    targets, vllm, _, _ = stack
    out = io.StringIO()
    config = DrillConfig(
        concurrency=6,
        max_tokens=6,
        dwell_s=2.0,
        short_dwell_s=1.0,
        rollback_within_s=3.0,
        outage_s=1.5,
        trace=True,
        live=False,
    )
    result = await run_drill(targets, config, out)
    text = out.getvalue()
    assert result.ok, result.failures
    assert result.user_visible_errors == 0
    assert [rb.fault for rb in result.rollbacks] == ["vLLM error_rate=1", "vLLM outage"]
    assert all(rb.seconds is not None and rb.seconds <= 3.0 for rb in result.rollbacks)
    assert result.rollbacks[0].rule == "error_rate"
    by_step = {s.name: s for s in result.steps}
    # Every SPLIT step carried traffic on both engines; FACADE and SHADOW none on vLLM.
    for name in ("SPLIT 10%", "SPLIT 30%", "SPLIT 70%", "SPLIT 70% (retry)"):
        providers = {c.provider for c in by_step[name].calls}
        assert {"ollama", "vllm"} <= providers, name
    for name in ("FACADE", "SHADOW", "ABORTED"):
        assert {c.provider for c in by_step[name].calls} == {"ollama"}, name
    # The fault and the outage were answered by Ollama's fallback.
    assert any(c.fallback for c in by_step["FAULT 503"].calls)
    assert any(c.fallback for c in by_step["OUTAGE"].calls)
    # What an operator reads: llmctl equivalents, the evidence, the gate, the summary.
    assert f"$ llmctl promote --control {targets.control} --reason 'drill: split 10'" in text
    assert "automatic rollback: error_rate:" in text
    assert "go/no-go:" in text
    assert f"$ llmctl promote --control {targets.control} --force --reason" in text
    assert "request id drill-" in text
    assert "drill PASSED" in text
    assert vllm.faults.error_rate == 0.0  # the drill cleared its fault
    # The meaning step: GO while vLLM paraphrases, NO-GO on unrelated answers, fault cleared.
    assert "semantic_similarity: GO, p10 1.00" in text
    assert "semantic_similarity: NO-GO, p10 0." in text
    assert {c.provider for c in by_step["SHADOW (unrelated)"].calls} == {"ollama"}
    assert vllm.faults.unrelated_answers is False
