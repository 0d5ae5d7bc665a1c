"""``llmctl gonogo``, run in-process (in a worker thread) against a real control service whose
golden queries go to a fake router (``clients.llm.testing``) and whose VRAM source is a fake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from clients.cli.main import main
from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from clients.llm import ErrorCode
from clients.llm.testing import FakeError, FakeRouter, GenerateScript
from control_service.app import ControlApp, start_control
from control_service.rollback.gate import VramObservation
from control_service.settings import ControlSettings
from control_service.stats_windows import Entry, Histogram, Report

GOLDEN = """
queries:
  - name: greets
    prompt: "Say hello."
    checks:
      contains: ["Hello"]
      min_length: 5
"""
STABLE = VramObservation(7200, 720, 20 * 2**30, 20 * 2**30, 21 * 2**30, 24 * 2**30)


class FakeVram:
    async def vram(self, window_s: float) -> VramObservation | None:
        return STABLE


@dataclass
class Stack:
    app: ControlApp
    http: httpx.AsyncClient
    router: FakeRouter

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    def report(self, requests: int, errors: int, *, shadow: bool, ttft_ms: float = 80) -> None:
        """vLLM stats as a router would report them (fed to the service's windows)."""
        bounds = (100.0, 1000.0, 5000.0, 10000.0)
        bucket = sum(1 for b in bounds if b < ttft_ms)
        counts = [0] * (len(bounds) + 1)
        counts[bucket] = requests
        entry = Entry(
            provider="vllm",
            task="analysis",
            requests=requests,
            errors=errors,
            ttft_ms=Histogram(bounds, counts),
            shadow=shadow,
        )
        self.app.stats.add(Report("r1", self.app.controller.current.version, 0, 1, [entry]))

    def scored_pairs(self, n: int, cosine: float) -> None:
        """``n`` mirrored pairs with a semantic similarity, as a router reports them."""
        assert self.app.shadow is not None
        pair = control_pb2.ShadowComparison(
            task=common_pb2.TASK_ANALYSIS,
            model="qwen3:8b",
            primary_provider=common_pb2.PROVIDER_OLLAMA,
            shadow_provider=common_pb2.PROVIDER_VLLM,
            primary_ok=True,
            shadow_ok=True,
            text_similarity=0.3,
            embedding_cosine=cosine,
        )
        self.app.shadow.add("r1", control_pb2.StatsReport(shadow_comparisons=[pair] * n))


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    golden = tmp_path / "golden.yaml"
    golden.write_text(GOLDEN)
    async with FakeRouter() as router:
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
        settings = ControlSettings(
            host="127.0.0.1",
            port=0,
            db_path=tmp_path / "control.db",
            grace_period_s=0.5,
            ollama_base_url="http://ollama.test",
            vllm_base_url="http://vllm.test",
            golden_queries_file=golden,
            golden_router_address=router.target,
            gonogo_min_requests=10,
            gonogo_vram_window_s=3600,
            rollback_enabled=False,
            insecure=True,
        )
        app = await start_control(settings, http_client=http, vram_source=FakeVram())
        yield Stack(app, http, router)
        await app.stop(0)
        await http.aclose()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMCTL_CONTROL", "LLMCTL_TOKEN", "LLMCTL_TARGET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMCTL_TOKEN_FILE", "")  # not a make-run token lying in .run/


async def llmctl(target: str, *argv: str) -> int:
    """``llmctl ARGV --control TARGET`` in a worker thread (the service runs on this loop)."""
    return await asyncio.to_thread(main, [*argv, "--control", target])


async def gonogo_json(
    stack: Stack, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, Any]]:
    status = await llmctl(stack.target, "gonogo", *argv, "-o", "json")
    out, err = capsys.readouterr()
    assert err == ""
    document: dict[str, Any] = json.loads(out)
    return status, document


async def test_inconclusive_without_data_exits_4(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    status, doc = await gonogo_json(stack, capsys)
    assert status == 4
    assert doc["verdict"] == "inconclusive"
    assert [(c["name"], c["verdict"]) for c in doc["criteria"]] == [
        ("golden_queries", "inconclusive"),
        ("latency_p95", "inconclusive"),
        ("shadow_error_rate", "inconclusive"),
        ("vram", "go"),
        ("semantic_similarity", "inconclusive"),
        ("judge_loss_rate", "go"),  # optional, off
        ("embedding_parity", "go"),  # Embed stays on Ollama
        ("structured_output_validity", "go"),  # no JSON pairs: nothing to hold on
    ]
    assert doc["criteria"][0]["detail"] == (
        "the golden queries have not run yet (llmctl gonogo --run-golden)"
    )


async def test_go_exits_0_with_a_table_of_criteria(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.report(40, 0, shadow=False)
    stack.report(100, 0, shadow=True)
    stack.scored_pairs(30, cosine=0.9)
    status = await llmctl(stack.target, "gonogo", "--run-golden")
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "go/no-go: GO"
    assert lines[2].split() == ["CRITERION", "VERDICT", "VALUE", "THRESHOLD", "DETAIL"]
    rows = {line.split()[0]: line for line in lines[3:]}
    assert set(rows) == {
        "golden_queries",
        "latency_p95",
        "shadow_error_rate",
        "vram",
        "semantic_similarity",
        "judge_loss_rate",
        "embedding_parity",
        "structured_output_validity",
    }
    assert rows["semantic_similarity"].split()[1:4] == ["GO", "p10", "0.90"]
    assert rows["golden_queries"].split()[1:5] == ["GO", "1/1", "passed", "(0s"]
    assert "0.00% (0/140)" not in rows["shadow_error_rate"]  # mirrored requests only
    assert "0.00% (0/100)" in rows["shadow_error_rate"]
    # The golden query went to the router pinned to vLLM.
    (call,) = stack.router.servicer.generate_calls
    assert call.request.provider == common_pb2.PROVIDER_VLLM


async def test_no_go_exits_3_naming_what_failed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.report(40, 0, shadow=False, ttft_ms=12_000)  # p95 over the 10 s NO-GO line
    stack.report(100, 0, shadow=True)
    stack.router.servicer.generate = GenerateScript(
        error=FakeError(
            grpc.StatusCode.UNAVAILABLE,
            "vllm returned HTTP 503",
            error_code=ErrorCode.LLM_UNAVAILABLE,
            provider="vllm",
        )
    )
    status, doc = await gonogo_json(stack, capsys, "--run-golden")
    assert status == 3
    assert doc["verdict"] == "no_go"
    golden, latency = doc["criteria"][0], doc["criteria"][1]
    assert golden["verdict"] == "no_go"
    assert golden["value"].startswith("0/1 passed")
    assert golden["detail"] == "greets: LLM_UNAVAILABLE: vllm returned HTTP 503"
    assert latency["verdict"] == "no_go"
    assert latency["threshold"] == "GO < 5000 ms, NO-GO > 10000 ms"


async def test_unreachable_control_service_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status = await llmctl("127.0.0.1:1", "--timeout", "2", "gonogo")
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err.startswith("llmctl: error: control service unavailable at 127.0.0.1:1")
