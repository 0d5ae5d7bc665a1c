"""The automatic rollback's decision logic with plain data: rules, probe hysteresis, decisions,
and what the phase machine and the store keep for them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from control_service import phases, state
from control_service.errors import InvalidChange
from control_service.rollback import decide as dec
from control_service.rollback import rules
from control_service.rollback.probes import EngineHealth, HealthState, HealthTracker, observe
from control_service.rollback.rules import Outcome, Signals
from control_service.state import (
    DesiredState,
    Flags,
    Migration,
    Phase,
    RollbackThresholds,
    RolloutStatus,
)
from control_service.stats_windows import Aggregate, Entry, Histogram, Report, StatsWindows
from control_service.store import Change, Decision, SqliteStore
from control_service.validation import violations

BOUNDS = (100.0, 250.0, 500.0, 1000.0, 5000.0)
T = RollbackThresholds(
    error_rate=0.05,
    latency_p95_ms=500,
    embed_latency_p95_ms=1000,
    min_requests=20,
    consecutive_timeouts=3,
    timeout_routers_required=2,
    health_failure_threshold=3,
    health_success_threshold=2,
    cooldown_seconds=60,
    max_automatic_rollbacks=2,
)
HEALTHY = EngineHealth(HealthState.HEALTHY, 0, 5, 5)
UNHEALTHY = EngineHealth(HealthState.UNHEALTHY, 4, 0, 9, "HTTP 503 from http://vllm/health")
SPLIT30 = Migration(phase=Phase.SPLIT, split_weight_percent=30)


def hist(*counts: int) -> Histogram:
    return Histogram(BOUNDS, list(counts))


def agg(
    requests: int,
    errors: int = 0,
    routers: tuple[str, ...] = ("r1",),
    ttft: Histogram | None = None,
    total: Histogram | None = None,
) -> Aggregate:
    return Aggregate(
        requests=requests, errors=errors, ttft_ms=ttft, total_ms=total, routers=set(routers)
    )


def signals(**kw: object) -> Signals:
    base: dict[str, object] = {"window_seconds": 300, "config_version": 7, "min_config_version": 5}
    base.update(kw)
    return Signals(**base)  # type: ignore[arg-type]


# --- rules ----------------------------------------------------------------------------------


def test_error_rate_sums_counts_over_tasks_and_routers() -> None:
    s = signals(vllm={"analysis": agg(30, 1), "synthesis": agg(20, 1, ("r2",))})
    r = rules.error_rate(T, s)
    assert (r.outcome, r.samples) == (Outcome.PASS, 50)
    assert r.value == pytest.approx(0.04)
    s = signals(vllm={"analysis": agg(30, 1), "synthesis": agg(20, 4, ("r2",))})
    r = rules.error_rate(T, s)
    assert r.outcome is Outcome.FAIL
    assert r.value == pytest.approx(0.1)
    assert "5 errors in 50 vLLM requests = 10% > 5%" in r.detail


def test_too_few_requests_and_no_data_hold() -> None:
    # 19 requests, all failed: still no verdict ("one transient 5xx is a huge %").
    r = rules.error_rate(T, signals(vllm={"analysis": agg(19, 19)}))
    assert r.outcome is Outcome.INCONCLUSIVE
    assert "fewer than min_requests 20" in r.detail
    empty = signals()
    assert {x.outcome for x in rules.evaluate(T, empty)} == {Outcome.INCONCLUSIVE}


def test_latency_uses_ttft_for_generate_and_total_for_embed_from_merged_histograms() -> None:
    # Router a fast, router b slow: merged, 10 of 40 are above 500 ms, so p95 is in 500-1000.
    fast = agg(30, ttft=hist(30, 0, 0, 0, 0, 0), total=hist(0, 0, 0, 0, 30, 0))
    slow = agg(10, routers=("r2",), ttft=hist(0, 0, 0, 10, 0, 0))
    s = signals(vllm={"analysis": fast, "synthesis": slow})
    r = rules.latency_p95(T, s)
    assert r.outcome is Outcome.FAIL
    assert r.value is not None
    assert 500 < r.value <= 1000
    assert "generate TTFT p95" in r.detail
    assert "embed total: 0 samples" in r.detail
    # The slow total durations of generate calls do not count: TTFT does.
    s = signals(vllm={"analysis": fast})
    assert rules.latency_p95(T, s).outcome is Outcome.PASS
    # Embed is judged on the whole call against its own threshold.
    embed = agg(25, total=hist(0, 0, 0, 0, 25, 0))
    r = rules.latency_p95(T, signals(vllm={"embedding": embed}))
    assert (r.outcome, r.threshold) == (Outcome.FAIL, 1000)
    r = rules.latency_p95(T, signals(vllm={"embedding": agg(25, total=hist(25, 0, 0, 0, 0, 0))}))
    assert r.outcome is Outcome.PASS


def test_latency_in_the_overflow_bucket_fails_and_is_json_safe() -> None:
    s = signals(vllm={"analysis": agg(20, ttft=hist(0, 0, 0, 0, 0, 20))})
    r = rules.latency_p95(T, s)
    assert r.outcome is Outcome.FAIL
    assert json.loads(json.dumps(r.evidence()))["value"] == "inf"


def test_consecutive_timeouts_need_enough_routers_to_agree() -> None:
    vllm = {"analysis": agg(5, routers=("r1", "r2", "r3"))}
    one = signals(vllm=vllm, consecutive_timeouts={"r1": 4, "r2": 0, "r3": 1})
    r = rules.consecutive_timeouts(T, one)
    assert (r.outcome, r.value) == (Outcome.PASS, 4)  # one router fails over locally
    two = signals(vllm=vllm, consecutive_timeouts={"r1": 4, "r2": 3, "r3": 1})
    r = rules.consecutive_timeouts(T, two)
    assert r.outcome is Outcome.FAIL
    assert "r1 (4), r2 (3)" in r.detail
    # A fleet of one router: that router is the whole fleet.
    single = signals(vllm={"analysis": agg(5)}, consecutive_timeouts={"r1": 3})
    assert rules.consecutive_timeouts(T, single).outcome is Outcome.FAIL
    # No vLLM traffic: hold.
    assert rules.consecutive_timeouts(T, signals()).outcome is Outcome.INCONCLUSIVE


def test_health_follows_the_probe_state() -> None:
    assert rules.health(T, signals()).outcome is Outcome.INCONCLUSIVE
    assert rules.health(T, signals(vllm_health=HEALTHY)).outcome is Outcome.PASS
    r = rules.health(T, signals(vllm_health=UNHEALTHY))
    assert r.outcome is Outcome.FAIL
    assert "HTTP 503" in r.detail


# --- probe hysteresis -----------------------------------------------------------------------


def test_probe_hysteresis_fail_three_succeed_two() -> None:
    h = EngineHealth()
    h = observe(h, True, "", 1.0, 3, 2)
    assert h.state is HealthState.HEALTHY  # nothing to recover from
    for i in range(2):
        h = observe(h, False, "down", 2.0 + i, 3, 2)
        assert h.state is HealthState.HEALTHY
    h = observe(h, False, "down", 4.0, 3, 2)
    assert (h.state, h.since, h.consecutive_failures) == (HealthState.UNHEALTHY, 4.0, 3)
    h = observe(h, True, "", 5.0, 3, 2)
    assert h.state is HealthState.UNHEALTHY
    h = observe(h, False, "down", 6.0, 3, 2)  # a flap resets the success count
    h = observe(h, True, "", 7.0, 3, 2)
    assert h.state is HealthState.UNHEALTHY
    h = observe(h, True, "", 8.0, 3, 2)
    assert (h.state, h.probes) == (HealthState.HEALTHY, 8)
    tracker = HealthTracker()
    assert tracker.view("vllm").state is HealthState.UNKNOWN
    for _ in range(3):
        tracker.observe("vllm", False, "x", 0.0, 3, 2)
    assert tracker.view("vllm").state is HealthState.UNHEALTHY
    assert tracker.view("ollama").state is HealthState.UNKNOWN


# --- decisions ------------------------------------------------------------------------------

FAIL_ERR = rules.RuleResult("error_rate", Outcome.FAIL, 0.3, 0.05, 40, "12 errors")
FAIL_LAT = rules.RuleResult("latency_p95", Outcome.FAIL, 900.0, 500, 40, "p95 900 ms")
PASS_TO = rules.RuleResult("consecutive_timeouts", Outcome.PASS, 0, 3, 2, "none")
HOLD_H = rules.RuleResult("health", Outcome.INCONCLUSIVE, None, 3, 0, "not probed")


def test_rollback_when_a_rule_fails_in_split_primary_and_paused() -> None:
    for m in (SPLIT30, Migration(phase=Phase.PRIMARY, split_weight_percent=100)):
        for current in (m, phases.pause(m, "watching")):
            d = dec.decide(current, T, [FAIL_ERR, PASS_TO], HEALTHY, now=100.0)
            assert d.action is dec.Action.ROLLBACK
            assert d.reason == "automatic rollback: error_rate: 12 errors"
            assert d.acting == (FAIL_ERR,)


def test_no_checks_where_vllm_carries_no_traffic() -> None:
    for m in (
        Migration(),
        Migration(phase=Phase.SHADOW),
        phases.abort(SPLIT30, "operator"),
    ):
        assert dec.decide(m, T, [FAIL_ERR], HEALTHY, now=1.0).action is dec.Action.NONE


def test_missing_data_holds() -> None:
    held = [r for r in rules.evaluate(T, signals()) if r.outcome is Outcome.INCONCLUSIVE]
    assert len(held) == 4
    assert dec.decide(SPLIT30, T, held, HEALTHY, now=1.0).action is dec.Action.NONE


def test_dry_run_rules_record_but_do_not_act() -> None:
    t = RollbackThresholds(dry_run_rules=("error_rate",))
    d = dec.decide(SPLIT30, t, [FAIL_ERR, PASS_TO], HEALTHY, now=1.0, epoch=5)
    assert d.action is dec.Action.WOULD_ROLL_BACK
    assert (d.dry_run, d.acting, d.key) == ((FAIL_ERR,), (), "dry_run:5:error_rate")
    assert d.reason.startswith("dry run, not acting: would roll back (error_rate:")
    # A live rule failing too: the rollback happens, naming the dry-run one in the evidence.
    d = dec.decide(SPLIT30, t, [FAIL_ERR, FAIL_LAT], HEALTHY, now=1.0)
    assert (d.action, d.acting, d.dry_run) == (dec.Action.ROLLBACK, (FAIL_LAT,), (FAIL_ERR,))


def test_cooldown_after_a_rollback() -> None:
    m = SPLIT30
    aborted = phases.automatic_rollback(m, "bad", at=1000.0)
    again = phases.retry(aborted)
    assert (again.automatic_rollbacks, again.last_rollback_at) == (1, 1000.0)
    d = dec.decide(again, T, [FAIL_ERR], HEALTHY, now=1030.0)
    assert d.action is dec.Action.SUPPRESSED
    assert d.once
    assert "within the 60s cooldown (30s left)" in d.reason
    assert dec.decide(again, T, [FAIL_ERR], HEALTHY, now=1061.0).action is dec.Action.ROLLBACK


def test_cap_stops_automation() -> None:
    m = Migration(phase=Phase.SPLIT, split_weight_percent=30, automatic_rollbacks=2)
    d = dec.decide(m, T, [FAIL_ERR], HEALTHY, now=1.0)
    assert (d.action, d.once, d.key) == (dec.Action.CAP_REACHED, True, "cap:2:2")
    assert "an operator must act" in d.reason
    # The cap wins over a freeze and a cooldown: automation does nothing more.
    m2 = Migration(
        phase=Phase.SPLIT, split_weight_percent=30, automatic_rollbacks=2, last_rollback_at=0.0
    )
    assert dec.decide(m2, T, [FAIL_ERR], UNHEALTHY, now=1.0).action is dec.Action.CAP_REACHED
    # 0 means never roll back automatically.
    t0 = RollbackThresholds(max_automatic_rollbacks=0)
    assert dec.decide(SPLIT30, t0, [FAIL_ERR], HEALTHY, 1.0).action is dec.Action.CAP_REACHED


def test_freeze_when_the_fallback_is_unhealthy_too() -> None:
    d = dec.decide(SPLIT30, T, [FAIL_ERR], UNHEALTHY, now=1.0, epoch=3)
    assert (d.action, d.pause, d.key) == (dec.Action.FREEZE, True, "freeze:3")
    assert "the fallback Ollama is unhealthy (HTTP 503" in d.reason
    paused = phases.pause(SPLIT30, "operator")
    d = dec.decide(paused, T, [FAIL_ERR], UNHEALTHY, now=1.0)
    assert (d.action, d.pause) == (dec.Action.FREEZE, False)
    # Ollama merely not probed yet is no reason to freeze.
    assert dec.decide(SPLIT30, T, [FAIL_ERR], EngineHealth(), 1.0).action is dec.Action.ROLLBACK


def test_evidence_names_rule_window_samples_values_thresholds_and_versions() -> None:
    d = dec.decide(SPLIT30, T, [FAIL_ERR, PASS_TO, HOLD_H], HEALTHY, now=12.5)
    ev = dec.evidence(
        d,
        m=SPLIT30,
        config_version=7,
        min_config_version=5,
        window_seconds=300,
        vllm=HEALTHY,
        ollama=HEALTHY,
        decided_at=12.5,
    )
    ev = json.loads(json.dumps(ev))
    assert ev["acting_rules"] == ["error_rate"]
    assert ev["rules"][0] == {
        "rule": "error_rate",
        "outcome": "fail",
        "value": 0.3,
        "threshold": 0.05,
        "samples": 40,
        "detail": "12 errors",
    }
    assert (ev["window_seconds"], ev["config_version"], ev["min_config_version"]) == (300, 7, 5)
    assert (ev["phase"], ev["split_weight_percent"]) == ("SPLIT", 30)


def test_placement_changes_on_phase_weight_and_abort_but_not_pause() -> None:
    key = dec.placement(SPLIT30)
    assert dec.placement(phases.pause(SPLIT30, "x")) == key
    assert dec.placement(phases.promote(SPLIT30)) != key
    aborted = phases.abort(SPLIT30, "x")
    assert dec.placement(aborted) != key
    assert dec.placement(phases.retry(aborted)) == key  # back, but a new epoch version


# --- stats windows: consecutive timeouts per router -----------------------------------------


def test_latest_consecutive_timeouts_per_router_not_per_task() -> None:
    now = [1000.0]
    w = StatsWindows(clock=lambda: now[0])

    def report(router: str, version: int, task: str, ct: int) -> Report:
        e = Entry(provider="vllm", task=task, requests=1, consecutive_timeouts=ct)  # type: ignore[arg-type]
        return Report(router, version, 0, 1, [e])

    w.add(report("r1", 4, "synthesis", 3))
    now[0] += 1
    w.add(report("r1", 4, "analysis", 0))  # a later success reset r1's counter
    w.add(report("r2", 3, "analysis", 5))  # under an older version
    assert w.consecutive_timeouts("vllm", 0) == {"r1": 0, "r2": 5}
    assert w.consecutive_timeouts("vllm", 0, min_config_version=4) == {"r1": 0}
    assert w.consecutive_timeouts("vllm", 1000.5) == {"r1": 0, "r2": 5}
    assert w.consecutive_timeouts("ollama", 0) == {}
    now[0] += 10_000  # past retention
    w.add(report("r3", 4, "analysis", 1))
    assert w.consecutive_timeouts("vllm", 0) == {"r3": 1}


# --- state, phases, validation --------------------------------------------------------------


def test_counters_survive_every_verb_and_the_json_form() -> None:
    m = phases.automatic_rollback(SPLIT30, "auto", at=50.0)
    assert (m.status, m.aborted_phase, m.automatic_rollbacks) == (
        RolloutStatus.ABORTED,
        Phase.SPLIT,
        1,
    )
    for nxt in (phases.retry(m), phases.undo(m)):
        assert (nxt.automatic_rollbacks, nxt.last_rollback_at) == (1, 50.0)
    again = phases.automatic_rollback(phases.retry(m), "auto", at=90.0)
    assert (again.automatic_rollbacks, again.last_rollback_at) == (2, 90.0)
    t = RollbackThresholds(dry_run_rules=("health", "error_rate"), cooldown_seconds=5)
    s = DesiredState(flags=Flags(rollback=t), migration=again)
    assert state.loads(state.dumps(s)) == s


def test_a_snapshot_stored_before_the_rollback_knobs_still_loads() -> None:
    doc = state.to_dict(DesiredState())
    for key in (
        "cooldown_seconds",
        "max_automatic_rollbacks",
        "timeout_routers_required",
        "health_failure_threshold",
        "health_success_threshold",
        "dry_run_rules",
        "embed_latency_p95_ms",
    ):
        del doc["flags"]["rollback"][key]
    del doc["migration"]["automatic_rollbacks"], doc["migration"]["last_rollback_at"]
    assert state.from_dict(doc) == DesiredState()
    doc["flags"]["rollback"]["dry_run_rules"] = ["nope"]
    # The message is pydantic's, naming the field (it was the hand-written codec's wording).
    with pytest.raises(ValueError, match=r"flags\.rollback\.dry_run_rules\.0: Input should be "):
        state.from_dict(doc)


def test_validation_of_the_rollback_knobs() -> None:
    bad = RollbackThresholds(
        cooldown_seconds=-1,
        max_automatic_rollbacks=-1,
        timeout_routers_required=0,
        health_failure_threshold=0,
        health_success_threshold=101,
        embed_latency_p95_ms=0,
        dry_run_rules=("health", "health"),
    )
    found = {v.field for v in violations(DesiredState(flags=Flags(rollback=bad)))}
    assert found == {
        "flags.rollback.cooldown_seconds",
        "flags.rollback.max_automatic_rollbacks",
        "flags.rollback.timeout_routers_required",
        "flags.rollback.health_failure_threshold",
        "flags.rollback.health_success_threshold",
        "flags.rollback.embed_latency_p95_ms",
        "flags.rollback.dry_run_rules[1]",
    }


def test_unknown_dry_run_rule_names_are_refused_at_the_wire() -> None:
    from clients.gen.llmgateway.v1 import control_pb2
    from control_service import convert

    msg = convert.flags_to_proto(Flags())
    msg.rollback.dry_run_rules.append("latency")
    with pytest.raises(InvalidChange) as exc:
        convert.flags_from_proto(msg)
    assert [v.field for v in exc.value.violations] == ["flags.rollback.dry_run_rules[0]"]
    snap = convert.migration_to_proto(phases.automatic_rollback(SPLIT30, "x", at=12.0))
    assert (snap.automatic_rollbacks, snap.last_rollback_at.seconds) == (1, 12)
    assert isinstance(snap, control_pb2.MigrationState)


# --- the store: decision events and the events migration ------------------------------------


async def test_decisions_are_filed_under_the_current_version_and_pages_never_split_one(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open(DesiredState())

    async def promote() -> None:
        def mutate(cur: state.Snapshot) -> Change:
            m = phases.promote(cur.state.migration)
            return Change(state.with_migration(cur.state, m), "op", "promote", "go", {"k": 1})

        await store.commit(0, mutate)

    await promote()  # v2
    for i in range(3):
        await store.record(Decision("rollback-controller", "would_roll_back", f"d{i}", {"i": i}))
    await promote()  # v3
    events = await store.events(0, 10)
    assert [(e.version, e.action) for e in events] == [
        (3, "promote"),
        (2, "would_roll_back"),
        (2, "would_roll_back"),
        (2, "would_roll_back"),
        (2, "promote"),
        (1, "init"),
    ]
    assert json.loads(events[1].after_json) == {"evidence": {"i": 2}}
    assert json.loads(events[0].after_json)["evidence"] == {"k": 1}
    page, nxt = await store.event_page(0, 2)
    # The second event is one of v2's: the page takes all of v2.
    assert [e.version for e in page] == [3, 2, 2, 2, 2]
    assert nxt == 2
    page, nxt = await store.event_page(nxt, 2)
    assert ([e.version for e in page], nxt) == ([1], 0)
    await store.close()


async def test_the_events_table_migrates_from_schema_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE snapshots (version INTEGER PRIMARY KEY, created_at REAL NOT NULL,"
        " state_json TEXT NOT NULL)"
    )
    conn.execute(
        "CREATE TABLE events (version INTEGER PRIMARY KEY REFERENCES snapshots(version),"
        " time REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL,"
        " before_json TEXT NOT NULL, after_json TEXT NOT NULL)"
    )
    old = state.to_dict(DesiredState())
    del old["flags"]["rollback"]["cooldown_seconds"]
    del old["migration"]["automatic_rollbacks"]
    for v in (1, 2):
        conn.execute("INSERT INTO snapshots VALUES (?, ?, ?)", (v, float(v), json.dumps(old)))
        # Recent times: the store's retention would prune events from 1970.
        at = time.time() - 10 + v
        conn.execute("INSERT INTO events VALUES (?, ?, 'op', 'x', 'r', '{}', '{}')", (v, at))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    snap = await store.open(DesiredState())
    assert snap.version == 2
    assert snap.state.flags.rollback.cooldown_seconds == RollbackThresholds().cooldown_seconds
    await store.record(Decision("rollback-controller", "alert", "both down", {}))
    assert [(e.version, e.action) for e in await store.events(0, 10)] == [
        (2, "alert"),
        (2, "x"),
        (1, "x"),
    ]
    await store.close()
