"""``llmctl shadow report`` against a real control service fed by a real router's shadow
comparisons (and by hand-made reports for exact figures)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients.cli.main import main
from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from control_service.shadow_store import ShadowStore
from router_service.config import from_snapshot
from router_service.config.subscriber import SubscriberState
from tests.control.conftest import Control, start
from tests.router.conftest import start_harness
from tests.router.helpers import collect
from tests.router.shadow_support import shadow_snapshot, wait_mirror


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMCTL_CONTROL", "LLMCTL_TOKEN", "LLMCTL_TARGET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Control]:
    c = await start(tmp_path / "control.db")
    yield c
    await c.close()


async def llmctl(target: str, *argv: str) -> int:
    """Runs ``llmctl shadow report ARGV`` in a worker thread (the services run on this loop)."""
    return await asyncio.to_thread(
        main, ["--timeout", "10", "shadow", "report", *argv, "--control", target]
    )


async def report_json(
    control: Control, capsys: pytest.CaptureFixture[str], *argv: str
) -> dict[str, Any]:
    status = await llmctl(control.target, *argv, "-o", "json")
    out, err = capsys.readouterr()
    assert (status, err) == (0, ""), err
    document: dict[str, Any] = json.loads(out)
    return document


def _store(control: Control) -> ShadowStore:
    assert control.app.shadow is not None
    return control.app.shadow


async def test_json_shows_a_real_routers_pairs_texts_only_when_captured(
    control: Control, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = await start_harness(
        control_address=control.target,
        router_id="r1",
        config_cache_path=tmp_path / "r1.snapshot",
        stats_report_interval_s=0.05,
    )
    try:
        assert router.app.subscriber is not None
        await asyncio.wait_for(router.app.subscriber.wait_state(SubscriberState.SYNCED), 10)
        version = router.app.config.current.version
        mirror = router.app.shadow
        assert mirror is not None
        # The control service does not carry the capture flag yet: set the router's shadow
        # config directly, at the version it already runs.
        for capture, rid in ((False, "q-plain"), (True, "q-captured")):
            snap = shadow_snapshot(1.0, version=version, capture=capture)
            router.app.config.swap(from_snapshot(snap))
            req = router_pb2.GenerateRequest(request_id=rid, prompt="what is a graph?")
            await collect(router.stub.Generate(req))
        await wait_mirror(mirror, lambda: mirror.counters.compared == 2)
        store = _store(control)
        async with asyncio.timeout(10):
            await control.app.hub.wait_for(lambda: len(store) == 2)
    finally:
        await router.channel.close()
        await router.app.stop(0)

    doc = await report_json(control, capsys)
    assert (doc["pairs"], doc["dropped"], doc["shadow_error_rate"]) == (2, 0, 0.0)
    (group,) = doc["groups"]
    assert (group["task"], group["model"], group["pairs"]) == ("analysis", "qwen3:8b", 2)
    assert group["similarity_p50"] == 1.0
    assert group["shadow_success_rate"] == 1.0
    pairs = {p["request_id"]: p for p in doc["worst_pairs"]}
    assert set(pairs) == {"q-plain", "q-captured"}
    plain, captured = pairs["q-plain"], pairs["q-captured"]
    assert (plain["prompt"], plain["primary_text"], plain["shadow_text"]) == ("", "", "")
    assert captured["prompt"] == "what is a graph?"
    assert captured["primary_text"] == captured["shadow_text"] == "Hello, world!"
    assert (captured["primary_provider"], captured["shadow_provider"]) == ("ollama", "vllm")
    assert captured["shadow_ok"] is True
    assert captured["shadow_error_code"] is None
    assert captured["embedding_cosine"] is None


def _pair(rid: str, similarity: float, **kw: Any) -> control_pb2.ShadowComparison:
    msg = control_pb2.ShadowComparison(
        request_id=rid,
        task=common_pb2.TASK_SYNTHESIS,
        model="deepseek-r1:14b",
        primary_provider=common_pb2.PROVIDER_OLLAMA,
        shadow_provider=common_pb2.PROVIDER_VLLM,
        primary_ok=True,
        shadow_ok=True,
        primary_ttft_ms=120.0,
        shadow_ttft_ms=40.0,
        primary_tokens_per_second=24.0,
        shadow_tokens_per_second=70.0,
        length_ratio=1.1,
        text_similarity=similarity,
    )
    for k, v in kw.items():
        setattr(msg, k, v)
    return msg


async def test_table_and_json_figures_worst_and_window(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    report = control_pb2.StatsReport(
        config_version=1,
        shadow_comparisons=[
            _pair(
                "s-low",
                0.25,
                embedding_cosine=0.5,
                prompt="p?",
                primary_text="a b",
                shadow_text="c",
            ),
            _pair("s-mid", 0.5),
            _pair("s-high", 0.75),
            _pair(
                "s-fail", 0.0, shadow_ok=False, shadow_error_code=common_pb2.ERROR_CODE_LLM_TIMEOUT
            ),
            control_pb2.ShadowComparison(
                request_id="s-drop",
                task=common_pb2.TASK_SYNTHESIS,
                model="deepseek-r1:14b",
                dropped=True,
            ),
        ],
        shadow_dropped=1,
    )
    _store(control).add("r9", report)

    doc = await report_json(control, capsys, "--worst", "2", "--window", "600")
    assert doc["window_seconds"] == 600
    assert (doc["pairs"], doc["dropped"]) == (4, 1)
    assert doc["shadow_error_rate"] == 0.25
    (group,) = doc["groups"]
    assert group["task"] == "synthesis"
    assert group["shadow_success_rate"] == 0.75
    assert group["ttft_delta_ms_p50"] == -80.0
    assert group["tokens_per_second_delta_p50"] == 46.0
    assert group["similarity_p50"] == 0.5
    assert group["embedding_cosine_p50"] == 0.5
    assert [p["request_id"] for p in doc["worst_pairs"]] == ["s-low", "s-mid"]
    assert doc["worst_pairs"][0]["embedding_cosine"] == 0.5

    none = await report_json(control, capsys, "--worst", "0")
    assert none["worst_pairs"] == []

    assert await llmctl(control.target) == 0
    out, _ = capsys.readouterr()
    assert "shadow error rate  25.0%" in out
    assert "1 dropped (shadow queue full)" in out
    row = next(line for line in out.splitlines() if line.startswith("synthesis"))
    assert row.split() == [
        "synthesis",
        "deepseek-r1:14b",
        "4",
        "1",
        "100.0%",
        "75.0%",
        "-80.0ms",
        "+46.0",
        "0.30/0.50/0.70",  # p10 = 0.25 + 0.2 * 0.25
        "1.10",
        "0.50/0.50",  # semantic p10/p50 of the one scored pair
        "(1)",
        "-",  # no JSON answers
        "-",  # no judge
    ]
    assert "worst 3 pair(s) by similarity:" in out
    assert "  prompt:  p?" in out
    assert "  shadow:  c" in out


async def test_an_empty_report_and_the_failures(
    control: Control, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await llmctl(control.target) == 0
    out, _ = capsys.readouterr()
    assert "no shadow comparisons reported" in out
    with pytest.raises(SystemExit) as exc:
        main(["shadow", "report", "--window", "-5"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert await llmctl("127.0.0.1:1") == 1
    _, err = capsys.readouterr()
    assert err.startswith("llmctl: error: control service unavailable at 127.0.0.1:1")


def test_the_judge_column_reads_from_the_shadows_side() -> None:
    from clients.cli._shadow import judge_text

    g = control_pb2.ShadowGroupReport(
        judge_wins=3, judge_ties=5, judge_losses=1, judge_unjudged=2, judge_swap_checks=5
    )
    g.judge_swap_agreement = 0.8
    assert judge_text(g) == "3/5/1 (2 unjudged, self-agreement 80% of 5)"
    assert judge_text(control_pb2.ShadowGroupReport()) == "-"
    assert judge_text(control_pb2.ShadowGroupReport(judge_losses=2)) == "0/0/2"
