"""The phase machine with plain data: every legal step and every illegal transition."""

from __future__ import annotations

import pytest

from control_service import phases
from control_service.errors import InvalidChange, TransitionError
from control_service.state import Migration, Phase, RolloutStatus

FACADE = Migration()
SHADOW = Migration(phase=Phase.SHADOW)
SPLIT10 = Migration(phase=Phase.SPLIT, split_weight_percent=10)
SPLIT30 = Migration(phase=Phase.SPLIT, split_weight_percent=30)
SPLIT50 = Migration(phase=Phase.SPLIT, split_weight_percent=50)
SPLIT70 = Migration(phase=Phase.SPLIT, split_weight_percent=70)
PRIMARY = Migration(phase=Phase.PRIMARY, split_weight_percent=100)


def paused(m: Migration) -> Migration:
    return phases.pause(m, "hold")


def aborted(m: Migration) -> Migration:
    return phases.abort(m, "bad")


def where(m: Migration) -> tuple[Phase, int, RolloutStatus]:
    return m.phase, m.split_weight_percent, m.status


def test_promote_walks_the_seed_ladder() -> None:
    m = FACADE
    seen = []
    while m.phase is not Phase.PRIMARY:
        m = phases.promote(m)
        seen.append((m.phase, m.split_weight_percent))
    assert seen == [
        (Phase.SHADOW, 0),
        (Phase.SPLIT, 10),
        (Phase.SPLIT, 30),
        (Phase.SPLIT, 70),
        (Phase.PRIMARY, 100),
    ]


@pytest.mark.parametrize("start", [FACADE, SHADOW, SPLIT10, SPLIT70])
def test_promote_full_jumps_to_primary(start: Migration) -> None:
    assert where(phases.promote(start, full=True)) == (Phase.PRIMARY, 100, RolloutStatus.ACTIVE)


def test_promote_from_an_off_ladder_weight_takes_the_next_step() -> None:
    assert phases.promote(SPLIT50).split_weight_percent == 70
    assert phases.promote(Migration(phase=Phase.SPLIT, split_weight_percent=80)).phase is (
        Phase.PRIMARY
    )


def test_set_weight_enters_split_from_shadow_and_primary() -> None:
    assert where(phases.set_weight(SHADOW, 25)) == (Phase.SPLIT, 25, RolloutStatus.ACTIVE)
    assert where(phases.set_weight(PRIMARY, 90)) == (Phase.SPLIT, 90, RolloutStatus.ACTIVE)
    assert phases.set_weight(SPLIT30, 30) == SPLIT30  # no change: no new version


def test_pause_resume_abort_retry() -> None:
    p = phases.pause(SPLIT30, "looking at latency")
    assert (p.status, p.status_reason) == (RolloutStatus.PAUSED, "looking at latency")
    assert p.vllm_traffic_percent == 30  # a pause keeps the placement
    assert phases.resume(p) == SPLIT30
    a = phases.abort(SPLIT30, "errors")
    assert where(a) == (Phase.FACADE, 0, RolloutStatus.ABORTED)
    assert (a.aborted_phase, a.aborted_weight_percent) == (Phase.SPLIT, 30)
    assert a.vllm_traffic_percent == 0
    assert phases.retry(a) == SPLIT30
    # Abort works from a pause too, and retry comes back active.
    assert phases.retry(phases.abort(p, "x")) == SPLIT30


def test_abort_is_allowed_in_every_phase() -> None:
    for m in (FACADE, SHADOW, SPLIT10, PRIMARY, paused(SHADOW)):
        assert phases.abort(m).status is RolloutStatus.ABORTED


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (PRIMARY, (Phase.SPLIT, 70)),
        (SPLIT70, (Phase.SPLIT, 30)),
        (SPLIT50, (Phase.SPLIT, 30)),
        (SPLIT30, (Phase.SPLIT, 10)),
        (SPLIT10, (Phase.SHADOW, 0)),
        (SHADOW, (Phase.FACADE, 0)),
    ],
)
def test_undo_goes_back_one_step(start: Migration, expected: tuple[Phase, int]) -> None:
    m = phases.undo(start)
    assert (m.phase, m.split_weight_percent) == expected


def test_undo_to_a_named_earlier_phase() -> None:
    assert where(phases.undo(PRIMARY, Phase.SPLIT))[:2] == (Phase.SPLIT, 70)
    assert where(phases.undo(PRIMARY, Phase.FACADE))[:2] == (Phase.FACADE, 0)
    assert where(phases.undo(SPLIT30, Phase.SHADOW))[:2] == (Phase.SHADOW, 0)


def test_undo_keeps_a_pause_and_leaves_an_abort() -> None:
    m = phases.undo(paused(SPLIT30))
    assert where(m) == (Phase.SPLIT, 10, RolloutStatus.PAUSED)
    m = phases.undo(aborted(SPLIT30))
    assert where(m) == (Phase.SPLIT, 10, RolloutStatus.ACTIVE)
    assert m.aborted_phase is None
    m = phases.undo(aborted(PRIMARY), Phase.SHADOW)
    assert where(m) == (Phase.SHADOW, 0, RolloutStatus.ACTIVE)


def test_apply_dispatches_each_verb() -> None:
    assert phases.apply(FACADE, phases.Promote()) == SHADOW
    assert phases.apply(SHADOW, phases.SetWeight(10)) == SPLIT10
    assert phases.apply(SPLIT10, phases.Pause("hold")) == paused(SPLIT10)
    assert phases.apply(paused(SPLIT10), phases.Resume()) == SPLIT10
    assert phases.apply(SPLIT10, phases.Abort("a")) == phases.abort(SPLIT10, "a")
    assert phases.apply(aborted(SPLIT10), phases.Retry()) == SPLIT10
    assert phases.apply(SPLIT10, phases.Undo()) == SHADOW


# Every illegal transition: (state, verb, words the reason must contain).
ILLEGAL: list[tuple[str, Migration, phases.Verb, str]] = [
    ("promote past primary", PRIMARY, phases.Promote(), "already at PHASE_PRIMARY"),
    ("promote full at primary", PRIMARY, phases.Promote(full=True), "already at PHASE_PRIMARY"),
    ("promote while paused", paused(SHADOW), phases.Promote(), "paused"),
    ("promote full while paused", paused(SHADOW), phases.Promote(full=True), "paused"),
    ("promote while aborted", aborted(SHADOW), phases.Promote(), "aborted"),
    ("promote full while aborted", aborted(SHADOW), phases.Promote(full=True), "aborted"),
    ("set weight in facade", FACADE, phases.SetWeight(10), "PHASE_FACADE"),
    ("set weight while paused", paused(SPLIT10), phases.SetWeight(30), "paused"),
    ("set weight while aborted", aborted(SPLIT10), phases.SetWeight(30), "aborted"),
    ("pause while paused", paused(SHADOW), phases.Pause(), "already paused"),
    ("pause while aborted", aborted(SHADOW), phases.Pause(), "aborted"),
    ("resume when active", SHADOW, phases.Resume(), "not paused"),
    ("resume when aborted", aborted(SHADOW), phases.Resume(), "aborted"),
    ("abort when aborted", aborted(SHADOW), phases.Abort(), "already aborted"),
    ("retry when active", SHADOW, phases.Retry(), "not aborted"),
    ("retry when paused", paused(SHADOW), phases.Retry(), "not aborted"),
    ("undo at facade", FACADE, phases.Undo(), "already at PHASE_FACADE"),
    ("undo at facade while paused", paused(FACADE), phases.Undo(), "already at PHASE_FACADE"),
    ("undo aborted facade", aborted(FACADE), phases.Undo(), "already at PHASE_FACADE"),
    ("undo to the same phase", SPLIT30, phases.Undo(Phase.SPLIT), "not earlier"),
    ("undo to a later phase", SHADOW, phases.Undo(Phase.PRIMARY), "not earlier"),
    ("undo to facade at facade", FACADE, phases.Undo(Phase.FACADE), "not earlier"),
    ("undo aborted to its phase", aborted(SHADOW), phases.Undo(Phase.SHADOW), "not earlier"),
    ("undo aborted to later", aborted(SHADOW), phases.Undo(Phase.SPLIT), "not earlier"),
]


@pytest.mark.parametrize(
    ("start", "verb", "reason"), [c[1:] for c in ILLEGAL], ids=[c[0] for c in ILLEGAL]
)
def test_illegal_transition(start: Migration, verb: phases.Verb, reason: str) -> None:
    with pytest.raises(TransitionError, match=reason):
        phases.apply(start, verb)


@pytest.mark.parametrize("weight", [-1, 0, 100, 101])
def test_set_weight_out_of_range_names_the_field(weight: int) -> None:
    with pytest.raises(InvalidChange) as exc:
        phases.set_weight(SHADOW, weight)
    assert [v.field for v in exc.value.violations] == ["weight_percent"]


def test_weight_range_is_checked_before_the_state() -> None:
    # A bad argument is INVALID_ARGUMENT even where the verb would also be illegal.
    with pytest.raises(InvalidChange):
        phases.set_weight(FACADE, 0)


def test_vllm_share_follows_the_phase() -> None:
    assert [m.vllm_traffic_percent for m in (FACADE, SHADOW, SPLIT30, PRIMARY)] == [0, 0, 30, 100]
    assert aborted(PRIMARY).vllm_traffic_percent == 0
