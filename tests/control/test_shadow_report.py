"""GetShadowReport: the store's figures on known pairs, windows and bounds, the RPC over a real
control service, and comparisons made by a real router reaching it."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from control_service.shadow_store import ShadowStore, quantile, spread
from router_service.config import from_snapshot
from router_service.config.subscriber import SubscriberState
from tests.control.conftest import Control, RawRouter, start, violations, wait_until
from tests.router.conftest import start_harness
from tests.router.helpers import collect
from tests.router.shadow_support import shadow_snapshot, wait_mirror

P = control_pb2
ANALYSIS, SYNTHESIS = common_pb2.TASK_ANALYSIS, common_pb2.TASK_SYNTHESIS


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def pair(
    rid: str,
    similarity: float = 1.0,
    *,
    task: common_pb2.Task.ValueType = ANALYSIS,
    model: str = "qwen3:8b",
    primary_ok: bool = True,
    shadow_ok: bool = True,
    ttft: tuple[float, float] = (100.0, 50.0),
    tps: tuple[float, float] = (20.0, 60.0),
    length_ratio: float = 1.0,
    cosine: float | None = None,
    dropped: bool = False,
) -> control_pb2.ShadowComparison:
    msg = P.ShadowComparison(
        request_id=rid,
        task=task,
        model=model,
        primary_provider=common_pb2.PROVIDER_OLLAMA,
        shadow_provider=common_pb2.PROVIDER_VLLM,
        dropped=dropped,
    )
    if dropped:
        return msg
    msg.primary_ok, msg.shadow_ok = primary_ok, shadow_ok
    if not shadow_ok:
        msg.shadow_error_code = common_pb2.ERROR_CODE_LLM_TIMEOUT
    msg.primary_ttft_ms, msg.shadow_ttft_ms = ttft
    msg.primary_tokens_per_second, msg.shadow_tokens_per_second = tps
    msg.text_similarity, msg.length_ratio = similarity, length_ratio
    if cosine is not None:
        msg.embedding_cosine = cosine
    return msg


def report_of(*pairs: control_pb2.ShadowComparison, dropped: int = 0) -> control_pb2.StatsReport:
    return P.StatsReport(config_version=1, shadow_comparisons=pairs, shadow_dropped=dropped)


# --- plain store ---------------------------------------------------------------------------


def test_quantile_interpolates_between_closest_ranks() -> None:
    assert quantile([], 50) == 0.0
    assert quantile([3.0], 90) == 3.0
    assert quantile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert quantile([float(i) for i in range(11)], 10) == pytest.approx(1.0)
    assert quantile([0.2, 0.4, 0.6, 0.8], 10) == pytest.approx(0.26)
    assert quantile([0.2, 0.4, 0.6, 0.8], 90) == pytest.approx(0.74)


def test_spread_keeps_the_total_and_the_proportions() -> None:
    a, b, c = (ANALYSIS, "a"), (ANALYSIS, "b"), (ANALYSIS, "c")
    assert spread(7, Counter({a: 2, b: 1})) == {a: 5, b: 2}
    assert spread(10, Counter({a: 1, b: 1, c: 1})) == {a: 4, b: 3, c: 3}
    assert spread(3, Counter({a: 3})) == {a: 3}
    assert spread(5, Counter()) == {}


def test_group_figures_on_known_pairs() -> None:
    store = ShadowStore(clock=Clock())
    store.add(
        "r1",
        report_of(
            pair("a1", 0.2, ttft=(100.0, 40.0), tps=(20.0, 50.0), length_ratio=0.5, cosine=0.9),
            pair("a2", 0.4, ttft=(100.0, 60.0), tps=(20.0, 60.0), length_ratio=1.0, cosine=0.7),
            pair("a3", 0.6, ttft=(100.0, 80.0), tps=(20.0, 70.0), length_ratio=1.5),
            pair("a4", 0.8, ttft=(100.0, 120.0), tps=(20.0, 80.0), length_ratio=2.0),
            pair("a5", shadow_ok=False),
            pair("s1", 0.9, task=SYNTHESIS, model="deepseek-r1:14b"),
        ),
    )
    report = store.report()
    assert [(g.task, g.model) for g in report.groups] == [
        (ANALYSIS, "qwen3:8b"),
        (SYNTHESIS, "deepseek-r1:14b"),
    ]
    g = report.groups[0]
    assert (g.pairs, g.dropped) == (5, 0)
    assert g.primary_success_rate == 1.0
    assert g.shadow_success_rate == pytest.approx(0.8)
    # Figures of the four pairs where both sides succeeded.
    assert g.ttft_delta_ms_p50 == pytest.approx(-30.0)  # deltas -60, -40, -20, +20
    assert g.tokens_per_second_delta_p50 == pytest.approx(45.0)  # 30, 40, 50, 60
    assert g.similarity_p10 == pytest.approx(0.26)
    assert g.similarity_p50 == pytest.approx(0.5)
    assert g.similarity_p90 == pytest.approx(0.74)
    assert g.length_ratio_p50 == pytest.approx(1.25)
    assert g.embedding_cosine_p50 == pytest.approx(0.8)  # only the pairs that have one
    assert report.groups[1].embedding_cosine_p50 == 0.0
    assert report.shadow_error_rate == pytest.approx(1 / 6)
    assert [p.request_id for p in report.worst_pairs] == ["a1", "a2", "a3", "a4", "s1"]
    assert [p.request_id for p in store.report(worst=2).worst_pairs] == ["a1", "a2"]


def test_window_retention_and_the_pair_bound() -> None:
    clock = Clock()
    store = ShadowStore(retention_s=900, max_pairs=3, clock=clock)
    store.add("r1", report_of(pair("old")))
    clock.now += 100
    store.add("r1", report_of(pair("new")))
    clock.now += 20
    assert [p.request_id for p in store.report(window_s=50).worst_pairs] == ["new"]
    assert [p.request_id for p in store.report().worst_pairs] == ["new", "old"]  # latest first
    clock.now += 850  # "old" is now 970 s old, "new" 870 s
    assert [p.request_id for p in store.report().worst_pairs] == ["new"]
    store.add("r2", report_of(pair("x"), pair("y"), pair("z")))
    assert len(store) == 3  # at most max_pairs: the oldest went first
    assert {p.request_id for p in store.report().worst_pairs} == {"x", "y", "z"}


def test_dropped_mirrors_are_counted_per_group() -> None:
    clock = Clock()
    store = ShadowStore(clock=clock)
    # Ten drops, three sampled entries: 2 analysis, 1 synthesis -> 7 and 3.
    entries = [
        pair("d1", dropped=True),
        pair("d2", dropped=True),
        pair("d3", dropped=True, task=SYNTHESIS, model="deepseek-r1:14b"),
    ]
    store.add("r1", report_of(*entries, dropped=10))
    store.add("r2", report_of(dropped=2))  # counted without entries
    groups = {(g.task, g.model): g for g in store.report().groups}
    assert groups[(ANALYSIS, "qwen3:8b")].dropped == 7
    assert groups[(ANALYSIS, "qwen3:8b")].pairs == 0
    assert groups[(SYNTHESIS, "deepseek-r1:14b")].dropped == 3
    assert groups[(common_pb2.TASK_UNSPECIFIED, "")].dropped == 2
    assert store.report().worst_pairs == []
    assert store.report().shadow_error_rate == 0.0


# --- the RPC over a real control service ----------------------------------------------------


async def test_reports_from_router_sessions_reach_get_shadow_report(control: Control) -> None:
    routers = [RawRouter(control.stub, rid) for rid in ("r1", "r2")]
    for r in routers:
        r.ack((await r.next_snapshot()).version)
    routers[0].send(
        P.RouterSessionRequest(stats=report_of(pair("p1", 0.3), pair("p2", 0.9), dropped=0))
    )
    routers[1].send(
        P.RouterSessionRequest(
            stats=report_of(pair("p3", 0.5, shadow_ok=False), pair("d", dropped=True), dropped=1)
        )
    )
    await wait_until(control, lambda: control.app.stats.reports_received == 2)
    resp = await control.stub.GetShadowReport(P.GetShadowReportRequest(window_seconds=60))
    (group,) = resp.groups
    assert (group.pairs, group.dropped) == (3, 1)
    assert group.similarity_p50 == pytest.approx(0.6)
    assert resp.shadow_error_rate == pytest.approx(1 / 3)
    assert [p.request_id for p in resp.worst_pairs] == ["p1", "p2"]
    resp = await control.stub.GetShadowReport(P.GetShadowReportRequest(worst=1))
    assert [p.request_id for p in resp.worst_pairs] == ["p1"]
    for r in routers:
        r.close()


async def test_get_shadow_report_refuses_bad_arguments(control: Control) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await control.stub.GetShadowReport(P.GetShadowReportRequest(window_seconds=-1, worst=-2))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(err.value) == ["window_seconds", "worst"]


async def test_a_real_routers_comparisons_reach_the_report_texts_only_with_capture(
    tmp_path: Path,
) -> None:
    control = await start(tmp_path / "control.db")
    router = await start_harness(
        control_address=f"127.0.0.1:{control.app.port}",
        router_id="r-shadow",
        config_cache_path=tmp_path / "r.snapshot",
        stats_report_interval_s=0.05,
    )
    try:
        assert router.app.subscriber is not None
        await asyncio.wait_for(router.app.subscriber.wait_state(SubscriberState.SYNCED), 10)
        version = router.app.config.current.version
        mirror = router.app.shadow
        assert mirror is not None
        store = control.app.shadow
        assert store is not None

        # The control service does not carry the capture flag yet, so the test sets the
        # router's shadow config directly (same version: the session sees nothing new).
        for capture, rid in ((False, "plain"), (True, "captured")):
            router.app.config.swap(
                from_snapshot(shadow_snapshot(1.0, version=version, capture=capture))
            )
            req = router_pb2.GenerateRequest(request_id=rid, prompt=f"tell me about {rid}")
            assert (await collect(router.stub.Generate(req))).text == "Hello, world!"
        await wait_mirror(mirror, lambda: mirror.counters.compared == 2)
        await wait_until(control, lambda: len(store) == 2)

        resp = await control.stub.GetShadowReport(P.GetShadowReportRequest())
        (group,) = resp.groups
        assert (group.task, group.model, group.pairs) == (ANALYSIS, "qwen3:8b", 2)
        assert group.similarity_p50 == 1.0
        by_id = {p.request_id: p for p in resp.worst_pairs}
        assert set(by_id) == {"plain", "captured"}
        assert (by_id["plain"].prompt, by_id["plain"].primary_text) == ("", "")
        assert by_id["plain"].shadow_text == ""
        assert by_id["captured"].prompt == "tell me about captured"
        assert by_id["captured"].primary_text == "Hello, world!"
        assert by_id["captured"].shadow_text == "Hello, world!"
    finally:
        await router.channel.close()
        await router.app.stop(0)
        await control.close()


def test_meaning_figures_and_episodes() -> None:
    store = ShadowStore(clock=Clock())
    msgs = []
    for i, cos in enumerate([0.2, 0.9, 0.95, 1.0, None]):
        m = pair(f"s{i}", 0.3, cosine=cos)
        m.routing_key = f"q{i // 2}"
        msgs.append(m)
    msgs[4].semantic_dropped = True
    msgs[0].json_equal, msgs[0].json_field_agreement = True, 1.0
    msgs[1].json_equal, msgs[1].json_field_agreement = False, 0.5
    store.add("r1", report_of(*msgs))
    report = store.report(by_episode=True)
    (g,) = report.groups
    assert (g.semantic_pairs, g.semantic_dropped) == (4, 1)
    assert g.embedding_cosine_p10 == pytest.approx(quantile([0.2, 0.9, 0.95, 1.0], 10))
    assert (g.json_pairs, g.json_field_agreement_mean, g.json_equal_rate) == (2, 0.75, 0.5)
    # Worst episode first: q0 holds the 0.2 pair; q2 has no semantic score (its text: 0.3).
    assert [(e.routing_key, e.pairs) for e in report.episodes] == [("q0", 2), ("q2", 1), ("q1", 2)]
    assert report.episodes[0].semantic_min == pytest.approx(0.2)
    assert not report.episodes[1].HasField("semantic_min")
    assert list(report.episodes[0].tasks) == [ANALYSIS]
    assert not store.report().episodes  # only when asked


def test_judge_figures_per_group() -> None:
    store = ShadowStore(clock=Clock())
    v = control_pb2
    verdicts = [
        (v.JUDGE_VERDICT_SHADOW_BETTER, True),
        (v.JUDGE_VERDICT_TIE, None),
        (v.JUDGE_VERDICT_PRIMARY_BETTER, False),
        (v.JUDGE_VERDICT_PRIMARY_BETTER, True),
        (v.JUDGE_VERDICT_UNJUDGED, None),
        (v.JUDGE_VERDICT_UNSPECIFIED, None),  # not sent to the judge
    ]
    msgs = []
    for i, (verdict, agreed) in enumerate(verdicts):
        m = pair(f"j{i}")
        m.judge_verdict = verdict
        if agreed is not None:
            m.judge_swap_agreed = agreed
        msgs.append(m)
    store.add("r1", report_of(*msgs))
    (g,) = store.report().groups
    assert (g.judge_wins, g.judge_ties, g.judge_losses, g.judge_unjudged) == (1, 1, 2, 1)
    assert g.judge_swap_checks == 3
    assert g.judge_swap_agreement == pytest.approx(2 / 3)
