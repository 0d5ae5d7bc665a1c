"""The migration phase machine: pure functions from a :class:`Migration` to the next one.

FACADE → SHADOW → SPLIT (each of ``split_steps``, seed 10 → 30 → 70) → PRIMARY.

* ``promote`` moves one step (``full``: straight to PRIMARY); never while paused or aborted.
* ``set_weight`` (1..99) sets the SPLIT share; from SHADOW (or PRIMARY) it enters SPLIT; illegal
  from FACADE, while paused and while aborted.
* ``pause`` / ``resume`` freeze and unfreeze the migration.
* ``abort`` sends all traffic to Ollama (phase FACADE, share 0) and remembers the phase and weight
  it left; it is sticky: every verb but ``retry`` and ``undo`` is refused until then
  (control-plane.md 3.5 item 9, argo-rollouts #2929).
* ``retry`` restores the aborted phase and weight.
* ``automatic_rollback`` is the rollback controller's abort (not an operator verb): an abort that
  also counts ``automatic_rollbacks`` and stamps ``last_rollback_at``. Every verb carries those
  two fields through unchanged.
* ``undo`` goes back one step (or to a named earlier phase). Going back is always allowed, also
  while paused (the pause stays) and while aborted (which it leaves), because a rollback must have
  an exit in every state (Flagger #1801).

Illegal transitions raise :class:`TransitionError` with the reason; out-of-range arguments raise
:class:`InvalidChange` naming the request field. A verb that would change nothing is illegal too
(pause twice, resume when active), except ``set_weight`` to the current weight, which returns the
same state (the caller then records no new version).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from control_service.errors import FieldViolation, InvalidChange, TransitionError
from control_service.state import Migration, Phase, RolloutStatus

MIN_WEIGHT, MAX_WEIGHT = 1, 99


@dataclass(frozen=True, slots=True)
class Promote:
    full: bool = False
    action: ClassVar[str] = "promote"


@dataclass(frozen=True, slots=True)
class SetWeight:
    weight_percent: int
    action: ClassVar[str] = "set_weight"


@dataclass(frozen=True, slots=True)
class Pause:
    reason: str = ""
    action: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Resume:
    action: ClassVar[str] = "resume"


@dataclass(frozen=True, slots=True)
class Abort:
    reason: str = ""
    action: ClassVar[str] = "abort"


@dataclass(frozen=True, slots=True)
class Retry:
    action: ClassVar[str] = "retry"


@dataclass(frozen=True, slots=True)
class Undo:
    to_phase: Phase | None = None
    action: ClassVar[str] = "undo"


Verb = Promote | SetWeight | Pause | Resume | Abort | Retry | Undo


def _name(phase: Phase) -> str:
    return f"PHASE_{phase.name}"


def _where(m: Migration) -> str:
    if m.phase is Phase.SPLIT:
        return f"{_name(m.phase)} at {m.split_weight_percent}%"
    return _name(m.phase)


def _require_active(m: Migration, verb: str) -> None:
    if m.status is RolloutStatus.ABORTED:
        raise TransitionError(f"cannot {verb}: the migration is aborted; retry or undo first")
    if m.status is RolloutStatus.PAUSED:
        raise TransitionError(f"cannot {verb}: the migration is paused; resume first")


def _at(m: Migration, phase: Phase, weight: int | None = None) -> Migration:
    if weight is None:
        weight = {Phase.FACADE: 0, Phase.SHADOW: 0, Phase.PRIMARY: 100}.get(phase, 0)
    return replace(m, phase=phase, split_weight_percent=weight)


def promote(m: Migration, full: bool = False) -> Migration:
    _require_active(m, "promote")
    if m.phase is Phase.PRIMARY:
        raise TransitionError("cannot promote: already at PHASE_PRIMARY")
    if full:
        return _at(m, Phase.PRIMARY)
    if m.phase is Phase.FACADE:
        return _at(m, Phase.SHADOW)
    if m.phase is Phase.SHADOW:
        return _at(m, Phase.SPLIT, m.split_steps[0])
    higher = [s for s in m.split_steps if s > m.split_weight_percent]
    return _at(m, Phase.SPLIT, higher[0]) if higher else _at(m, Phase.PRIMARY)


def set_weight(m: Migration, weight_percent: int) -> Migration:
    if not MIN_WEIGHT <= weight_percent <= MAX_WEIGHT:
        raise InvalidChange(
            [
                FieldViolation(
                    "weight_percent",
                    f"must be in [{MIN_WEIGHT}, {MAX_WEIGHT}] (got {weight_percent}); "
                    "use promote --full for 100 and undo for 0",
                )
            ]
        )
    _require_active(m, "set the weight")
    if m.phase is Phase.FACADE:
        raise TransitionError(
            "cannot set the weight in PHASE_FACADE: promote to PHASE_SHADOW first"
        )
    return _at(m, Phase.SPLIT, weight_percent)


def pause(m: Migration, reason: str = "") -> Migration:
    if m.status is RolloutStatus.ABORTED:
        raise TransitionError("cannot pause: the migration is aborted; retry or undo first")
    if m.status is RolloutStatus.PAUSED:
        raise TransitionError("cannot pause: the migration is already paused")
    return replace(m, status=RolloutStatus.PAUSED, status_reason=reason)


def resume(m: Migration) -> Migration:
    if m.status is RolloutStatus.ABORTED:
        raise TransitionError("cannot resume: the migration is aborted, not paused; use retry")
    if m.status is not RolloutStatus.PAUSED:
        raise TransitionError("cannot resume: the migration is not paused")
    return replace(m, status=RolloutStatus.ACTIVE, status_reason="")


def abort(m: Migration, reason: str = "") -> Migration:
    if m.status is RolloutStatus.ABORTED:
        raise TransitionError("cannot abort: the migration is already aborted")
    return Migration(
        phase=Phase.FACADE,
        split_weight_percent=0,
        split_steps=m.split_steps,
        status=RolloutStatus.ABORTED,
        status_reason=reason or "aborted",
        aborted_phase=m.phase,
        aborted_weight_percent=m.split_weight_percent,
        automatic_rollbacks=m.automatic_rollbacks,
        last_rollback_at=m.last_rollback_at,
    )


def automatic_rollback(m: Migration, reason: str, at: float) -> Migration:
    """The rollback controller's abort: the same sticky abort an operator's is, counted for the
    cap (``automatic_rollbacks``) and stamped for the cooldown (``last_rollback_at``)."""
    return replace(
        abort(m, reason), automatic_rollbacks=m.automatic_rollbacks + 1, last_rollback_at=at
    )


def retry(m: Migration) -> Migration:
    if m.status is not RolloutStatus.ABORTED or m.aborted_phase is None:
        raise TransitionError("cannot retry: the migration is not aborted")
    return Migration(
        phase=m.aborted_phase,
        split_weight_percent=m.aborted_weight_percent,
        split_steps=m.split_steps,
        automatic_rollbacks=m.automatic_rollbacks,
        last_rollback_at=m.last_rollback_at,
    )


def _one_step_back(m: Migration) -> Migration:
    if m.phase is Phase.PRIMARY:
        return _at(m, Phase.SPLIT, m.split_steps[-1])
    if m.phase is Phase.SPLIT:
        lower = [s for s in m.split_steps if s < m.split_weight_percent]
        return _at(m, Phase.SPLIT, lower[-1]) if lower else _at(m, Phase.SHADOW)
    if m.phase is Phase.SHADOW:
        return _at(m, Phase.FACADE)
    raise TransitionError("cannot undo: already at PHASE_FACADE")


def undo(m: Migration, to_phase: Phase | None = None) -> Migration:
    # While aborted, undo steps back from the phase the abort left, and leaves ABORTED.
    base = m
    if m.status is RolloutStatus.ABORTED:
        if m.aborted_phase is None:
            raise TransitionError("cannot undo: the aborted state lost its phase")
        base = Migration(
            phase=m.aborted_phase,
            split_weight_percent=m.aborted_weight_percent,
            split_steps=m.split_steps,
            automatic_rollbacks=m.automatic_rollbacks,
            last_rollback_at=m.last_rollback_at,
        )
    if to_phase is None:
        return _one_step_back(base)
    if to_phase >= base.phase:
        raise TransitionError(
            f"cannot undo to {_name(to_phase)}: it is not earlier than {_where(base)}"
        )
    if to_phase is Phase.SPLIT:
        return _at(base, Phase.SPLIT, base.split_steps[-1])
    return _at(base, to_phase)


def apply(m: Migration, verb: Verb) -> Migration:
    """Dispatch one verb; see the module docstring for the rules."""
    match verb:
        case Promote(full=full):
            return promote(m, full)
        case SetWeight(weight_percent=w):
            return set_weight(m, w)
        case Pause(reason=reason):
            return pause(m, reason)
        case Resume():
            return resume(m)
        case Abort(reason=reason):
            return abort(m, reason)
        case Retry():
            return retry(m)
        case Undo(to_phase=to_phase):
            return undo(m, to_phase)
    raise AssertionError(f"unknown verb {verb!r}")  # pragma: no cover
