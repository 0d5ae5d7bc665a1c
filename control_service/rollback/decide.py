"""What the rollback controller does with the rules' results. Pure logic over plain data.

Checks run whenever vLLM answers traffic: PHASE_SPLIT and PHASE_PRIMARY, active *or paused*
(a paused rollout must still be able to roll back: Flagger #1801), never while aborted.

With at least one failing rule that is not in ``dry_run_rules``, in this order of precedence:

1. ``rollback_cap_reached``: ``automatic_rollbacks`` has reached ``max_automatic_rollbacks``;
   automation stops and only an operator acts (GitLab #249131). Recorded once per count.
2. ``rollback_suppressed``: within ``cooldown_seconds`` of the last automatic rollback.
   Recorded once per rollback.
3. ``freeze``: the fallback, Ollama, is unhealthy too, so rolling back to it would not help
   (argo-rollouts #1774/#1416): the migration is paused with the reason (when it is active) and
   an ``alert`` event is recorded.
4. ``rollback``: the sticky abort (``phases.automatic_rollback``); it stays until an operator
   retries.

Failing dry-run rules alone give ``would_roll_back``: recorded, never acted on. Everything else
(all PASS or INCONCLUSIVE) is ``none``: missing data holds.

A decision's ``key`` names its episode: the controller writes a decision event when a key first
appears and not again while it persists (``once`` keys: not again at all), so a condition that
lasts an hour is one event, not 3,600.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from control_service.rollback.probes import EngineHealth, HealthState
from control_service.rollback.rules import Outcome, RuleResult
from control_service.state import Migration, RollbackThresholds, RolloutStatus

ACTOR = "rollback-controller"


class Action(enum.Enum):
    NONE = "none"
    ROLLBACK = "rollback"
    WOULD_ROLL_BACK = "would_roll_back"
    FREEZE = "freeze"
    SUPPRESSED = "rollback_suppressed"
    CAP_REACHED = "rollback_cap_reached"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    results: tuple[RuleResult, ...] = ()
    # Failing rules that act, and failing rules in dry-run.
    acting: tuple[RuleResult, ...] = ()
    dry_run: tuple[RuleResult, ...] = ()
    key: str = ""
    once: bool = False
    # FREEZE only: the migration is active and is to be paused.
    pause: bool = False


def watched(m: Migration) -> bool:
    """Whether vLLM answers traffic, so the rules apply: SPLIT or PRIMARY, active or paused."""
    return m.vllm_traffic_percent > 0


def placement(m: Migration) -> tuple[object, ...]:
    """What decides where traffic goes. Stats count only from the version where this last
    changed, so data from before a phase change (or from before a retry) never triggers."""
    return (m.phase, m.split_weight_percent, m.status is RolloutStatus.ABORTED)


def _summary(results: Sequence[RuleResult]) -> str:
    return "; ".join(f"{r.rule}: {r.detail}" for r in results)


def decide(
    m: Migration,
    t: RollbackThresholds,
    results: Sequence[RuleResult],
    ollama: EngineHealth,
    now: float,
    epoch: int = 0,
) -> Decision:
    """The decision for one evaluation; see the module docstring. ``epoch`` is the version the
    window's data starts at (it keys the dry-run and freeze episodes)."""
    if not watched(m):
        return Decision(Action.NONE)
    results = tuple(results)
    failing = [r for r in results if r.outcome is Outcome.FAIL]
    acting = tuple(r for r in failing if r.rule not in t.dry_run_rules)
    dry = tuple(r for r in failing if r.rule in t.dry_run_rules)
    if not acting:
        if not dry:
            return Decision(Action.NONE, results=results)
        names = ",".join(r.rule for r in dry)
        return Decision(
            Action.WOULD_ROLL_BACK,
            f"dry run, not acting: would roll back ({_summary(dry)})",
            results,
            (),
            dry,
            key=f"dry_run:{epoch}:{names}",
        )
    summary = _summary(acting)
    if m.automatic_rollbacks >= t.max_automatic_rollbacks:
        return Decision(
            Action.CAP_REACHED,
            f"would roll back ({summary}) but {m.automatic_rollbacks} automatic rollbacks "
            f"reached the cap of {t.max_automatic_rollbacks}: an operator must act (abort, or "
            "raise flags.rollback.max_automatic_rollbacks to re-arm automation)",
            results,
            acting,
            dry,
            key=f"cap:{m.automatic_rollbacks}:{t.max_automatic_rollbacks}",
            once=True,
        )
    if m.last_rollback_at is not None and now < m.last_rollback_at + t.cooldown_seconds:
        until = m.last_rollback_at + t.cooldown_seconds
        return Decision(
            Action.SUPPRESSED,
            f"would roll back ({summary}) but the last automatic rollback was "
            f"{now - m.last_rollback_at:.0f}s ago, within the {t.cooldown_seconds}s cooldown "
            f"({until - now:.0f}s left)",
            results,
            acting,
            dry,
            key=f"cooldown:{m.last_rollback_at!r}",
            once=True,
        )
    if ollama.state is HealthState.UNHEALTHY:
        return Decision(
            Action.FREEZE,
            f"frozen: vLLM fails ({summary}) and the fallback Ollama is unhealthy "
            f"({ollama.last_detail or 'failing probes'}); not rolling back to it",
            results,
            acting,
            dry,
            key=f"freeze:{epoch}",
            pause=m.status is RolloutStatus.ACTIVE,
        )
    return Decision(
        Action.ROLLBACK, f"automatic rollback: {summary}", results, acting, dry, key="rollback"
    )


def evidence(
    d: Decision,
    *,
    m: Migration,
    config_version: int,
    min_config_version: int,
    window_seconds: float,
    vllm: EngineHealth,
    ollama: EngineHealth,
    decided_at: float,
) -> dict[str, Any]:
    """The audit evidence of a decision: every rule's numbers, the window and the versions."""
    return {
        "decision": d.action.value,
        "acting_rules": [r.rule for r in d.acting],
        "dry_run_rules": [r.rule for r in d.dry_run],
        "rules": [r.evidence() for r in d.results],
        "window_seconds": window_seconds,
        "config_version": config_version,
        "min_config_version": min_config_version,
        "phase": m.phase.name,
        "split_weight_percent": m.split_weight_percent,
        "status": m.status.value,
        "automatic_rollbacks": m.automatic_rollbacks,
        "engines": {"vllm": vllm.evidence(), "ollama": ollama.evidence()},
        "decided_at": decided_at,
    }
