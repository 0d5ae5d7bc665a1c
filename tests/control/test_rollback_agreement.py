"""One misbehaving session cannot drive the automatic rollback (issue 21): with two or more
routers a rule's FAIL must survive leaving each router out."""

from __future__ import annotations

from control_service.rollback import rules
from control_service.rollback.agreement import require_agreement
from control_service.rollback.rules import Outcome, Signals
from control_service.state import RollbackThresholds
from control_service.stats_windows import Entry, Report, StatsWindows

T = RollbackThresholds(error_rate=0.05, min_requests=20, timeout_routers_required=2)


def windows(per_router: dict[str, tuple[int, int]]) -> StatsWindows:
    w = StatsWindows(300, 5, clock=lambda: 1000.0)
    for router, (requests, errors) in per_router.items():
        entry = Entry("vllm", "synthesis", requests=requests, errors=errors)
        w.add(Report(router, 1, 990, 1000, [entry]))
    return w


def judge(w: StatsWindows) -> dict[str, rules.RuleResult]:
    def signals(without: str | None = None) -> Signals:
        merged = w.merged(0, without=without)
        return Signals(
            window_seconds=300,
            config_version=1,
            min_config_version=0,
            vllm={task: a for (p, task), a in merged.items() if p == "vllm"},
        )

    full = signals()
    results = require_agreement(
        rules.evaluate(T, full),
        sorted(full.routers),
        lambda router: rules.evaluate(T, signals(router)),
    )
    return {r.rule: r for r in results}


def test_one_lying_router_cannot_drive_the_rollback() -> None:
    """The audit's case: forged stats from one session forced a fleet-wide rollback in 1 s.
    Within the ceilings a liar can still report every request as failed; alone, it holds."""
    lie = judge(windows({"liar": (1000, 1000), "r2": (1000, 0), "r3": (1000, 1)}))
    result = lie["error_rate"]
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "without router liar's reports" in result.detail


def test_a_fault_every_router_sees_still_rolls_back() -> None:
    seen = judge(windows({"r1": (100, 40), "r2": (100, 30)}))
    assert seen["error_rate"].outcome is Outcome.FAIL


def test_a_fleet_of_one_router_is_judged_alone() -> None:
    assert judge(windows({"r1": (100, 40)}))["error_rate"].outcome is Outcome.FAIL


def test_leaving_a_router_out_of_the_windows() -> None:
    w = windows({"r1": (100, 40), "r2": (50, 0)})
    assert w.merged(0)[("vllm", "synthesis")].requests == 150
    assert w.merged(0, without="r1")[("vllm", "synthesis")].requests == 50
