"""The StateStore contract, run against every store: bootstrap, persistence across reopen,
compare-and-set, atomic failure, monotone versions, events ordered and paged without splitting
a version, decisions, concurrent writers on one backing, and use after close."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from control_service import phases
from control_service.errors import StoreError, TransitionError, VersionConflict
from control_service.state import Phase, Snapshot, default_state, with_migration
from control_service.store import Change, Decision, Mutation, StateStore
from tests.control.store_contract.conftest import Backend


def promote(snap: Snapshot) -> Change:
    state = replace(snap.state, migration=phases.promote(snap.state.migration))
    return Change(state, "tester", "promote", "test")


def set_weight(weight: int, actor: str = "tester") -> Mutation:
    def mutate(snap: Snapshot) -> Change:
        m = snap.state.migration
        if m.phase is Phase.FACADE:
            m = phases.promote(m)
        if m.phase is Phase.SHADOW:
            m = phases.promote(m)
        new = with_migration(snap.state, phases.set_weight(m, weight))
        return Change(new, actor, "set_weight", f"w{weight}")

    return mutate


async def test_bootstrap_then_persist_across_reopen(backend: Backend) -> None:
    store = backend.new()
    first = await store.open(default_state())
    assert first.version == 1
    snap, changed = await store.commit(0, promote)
    assert (snap.version, changed, snap.state.migration.phase) == (2, True, Phase.SHADOW)
    await store.close()

    store = await backend.open()
    cur = await store.current()
    assert (cur.version, cur.state.migration.phase) == (2, Phase.SHADOW)
    events = await store.events(0, 10)
    assert [(e.version, e.action) for e in events] == [(2, "promote"), (1, "init")]
    assert json.loads(events[0].after_json) == {"migration.phase": "SHADOW"}
    assert (events[0].actor, events[0].reason) == ("tester", "test")
    assert events[1].actor == "control-service"
    # A second open of a non-empty store keeps it (``initial`` is only for an empty one).
    await store.close()  # SQLite has one writer per file (issue 21)
    other = await backend.open(replace(default_state(), catalog=cur.state.catalog))
    assert (await other.current()).version == 2


async def test_compare_and_set(backend: Backend) -> None:
    store = await backend.open()
    await store.commit(1, promote)
    with pytest.raises(VersionConflict) as exc:
        await store.commit(1, promote)
    assert (exc.value.expected, exc.value.current) == (1, 2)
    assert (await store.current()).version == 2
    assert len(await store.events(0, 10)) == 2  # nothing written by the conflict


async def test_a_failing_mutation_writes_nothing(backend: Backend) -> None:
    store = await backend.open()

    def illegal(snap: Snapshot) -> Change:
        phases.undo(snap.state.migration)  # FACADE: nothing to undo
        raise AssertionError("unreachable")

    with pytest.raises(TransitionError):
        await store.commit(0, illegal)
    assert await store.ping() == 1
    # No change: no version, no event.
    snap, changed = await store.commit(0, lambda s: None)
    assert (snap.version, changed) == (1, False)
    same, changed = await store.commit(0, lambda s: Change(s.state, "t", "noop", ""))
    assert (same.version, changed) == (1, False)
    assert len(await store.events(0, 10)) == 1


async def test_versions_never_go_backwards_across_reopen(backend: Backend) -> None:
    seen: list[int] = []
    for _ in range(3):
        store = await backend.open()
        snap, _ = await store.commit(0, promote if not seen else set_weight(10 + len(seen)))
        seen.append(snap.version)
        await store.close()
    assert seen == [2, 3, 4]


async def test_event_paging(backend: Backend) -> None:
    store = await backend.open()
    for w in (11, 12, 13, 14):
        await store.commit(0, set_weight(w))
    assert [e.version for e in await store.events(0, 2)] == [5, 4]
    assert [e.version for e in await store.events(4, 2)] == [3, 2]
    assert [e.version for e in await store.events(2, 2)] == [1]
    page, next_before = await store.event_page(0, 2)
    assert ([e.version for e in page], next_before) == ([5, 4], 4)
    page, next_before = await store.event_page(2, 5)
    assert ([e.version for e in page], next_before) == ([1], 0)


async def test_decisions_are_filed_under_the_current_version_in_write_order(
    backend: Backend,
) -> None:
    store = await backend.open()
    await store.commit(0, promote)
    first = await store.record(Decision("rollback-controller", "would_roll_back", "a", {"i": 1}))
    await store.record(Decision("rollback-controller", "alert", "b", {"i": 2}))
    assert (first.version, first.before_json) == (2, "{}")
    assert json.loads(first.after_json) == {"evidence": {"i": 1}}
    await store.commit(0, set_weight(10))
    events = await store.events(0, 10)
    assert [(e.version, e.action) for e in events] == [
        (3, "set_weight"),
        (2, "alert"),
        (2, "would_roll_back"),
        (2, "promote"),
        (1, "init"),
    ]
    # A page never splits a version: asking for 2 from the top of v2 returns all three.
    page, next_before = await store.event_page(3, 2)
    assert [e.action for e in page] == ["alert", "would_roll_back", "promote"]
    assert next_before == 2
    # Evidence of a change sits next to the changed parts.
    evidence_change = await store.commit(
        0,
        lambda s: Change(
            with_migration(s.state, phases.set_weight(s.state.migration, 30)),
            "rollback-controller",
            "set_weight",
            "why",
            {"rule": "error_rate"},
        ),
    )
    assert evidence_change[1]
    top = (await store.events(0, 1))[0]
    assert json.loads(top.after_json)["evidence"] == {"rule": "error_rate"}


async def test_two_writers_on_one_backing_never_both_pass_the_check(backend: Backend) -> None:
    """Two stores (two processes' worth) racing compare-and-set on the same version: per
    version exactly one wins, the loser gets VersionConflict, and no version is lost. SQLite
    refuses the second writer outright instead (one writer per file, issue 21)."""
    if backend.kind == "sqlite":
        first = await backend.open()
        with pytest.raises(StoreError, match="in use by another control service"):
            await backend.open()
        assert (await first.current()).version == 1
        return
    a, b = await backend.open(), await backend.open()
    await a.commit(0, promote)
    acked: list[tuple[int, str]] = []

    async def writer(store: StateStore, name: str) -> None:
        for i in range(15):
            while True:
                cur = await store.current()
                try:
                    # Every write sets a weight never set before, so each one changes.
                    snap, changed = await store.commit(
                        cur.version, set_weight(1 + 2 * i + (name == "b"), actor=name)
                    )
                except VersionConflict:
                    continue
                assert changed
                acked.append((snap.version, name))
                break

    await asyncio.gather(writer(a, "a"), writer(b, "b"))
    versions = sorted(v for v, _ in acked)
    assert len(set(versions)) == len(versions) == 30  # no version acknowledged twice
    events = await a.events(0, 100)
    by_version = {e.version: e.actor for e in events}
    for version, name in acked:
        assert by_version[version] == name  # every acknowledged change is in the log
    assert (await b.current()).version == max(versions)


async def test_use_after_close_is_a_store_error(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.current()
