"""The SQLite store on a real file: persistence, compare-and-set, monotonic versions, schema
versioning, and a kill -9 right after an acknowledged commit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from control_service import phases
from control_service.errors import StoreError, TransitionError, VersionConflict
from control_service.state import DesiredState, Phase, Snapshot, default_state
from control_service.store import SCHEMA_VERSION, Change, SqliteStore

REPO = Path(__file__).resolve().parents[2]


def promote(snap: Snapshot) -> Change:
    state = replace(snap.state, migration=phases.promote(snap.state.migration))
    return Change(state, "tester", "promote", "test")


async def opened(path: Path, initial: DesiredState | None = None) -> SqliteStore:
    store = SqliteStore(path)
    await store.open(initial or default_state())
    return store


async def test_bootstrap_then_persist_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "control.db"
    store = SqliteStore(path)
    first = await store.open(default_state())
    assert first.version == 1
    snap, changed = await store.commit(0, promote)
    assert (snap.version, changed, snap.state.migration.phase) == (2, True, Phase.SHADOW)
    await store.close()

    store = await opened(path)
    cur = await store.current()
    assert (cur.version, cur.state.migration.phase) == (2, Phase.SHADOW)
    events = await store.events(0, 10)
    assert [(e.version, e.action) for e in events] == [(2, "promote"), (1, "init")]
    assert json.loads(events[0].after_json) == {"migration.phase": "SHADOW"}
    assert (events[0].actor, events[0].reason) == ("tester", "test")
    await store.close()


async def test_sqlite_settings(tmp_path: Path) -> None:
    store = await opened(tmp_path / "c.db")
    await store.close()
    conn = sqlite3.connect(tmp_path / "c.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_compare_and_set(tmp_path: Path) -> None:
    store = await opened(tmp_path / "c.db")
    await store.commit(1, promote)
    with pytest.raises(VersionConflict) as exc:
        await store.commit(1, promote)
    assert (exc.value.expected, exc.value.current) == (1, 2)
    assert (await store.current()).version == 2
    assert len(await store.events(0, 10)) == 2  # nothing written by the conflict
    await store.close()


async def test_a_failing_mutation_writes_nothing(tmp_path: Path) -> None:
    store = await opened(tmp_path / "c.db")

    def illegal(snap: Snapshot) -> Change:
        phases.undo(snap.state.migration)  # FACADE: nothing to undo
        raise AssertionError("unreachable")

    with pytest.raises(TransitionError):
        await store.commit(0, illegal)
    assert await store.ping() == 1
    # No change: no version, no event.
    snap, changed = await store.commit(0, lambda s: None)
    assert (snap.version, changed) == (1, False)
    assert len(await store.events(0, 10)) == 1
    await store.close()


async def test_versions_never_go_backwards_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    seen = []
    for _ in range(3):
        store = await opened(path)
        snap, _ = await store.commit(0, promote)
        seen.append(snap.version)
        await store.close()
    assert seen == [2, 3, 4]


async def test_event_paging(tmp_path: Path) -> None:
    store = await opened(tmp_path / "c.db")
    for _ in range(4):
        await store.commit(0, promote)
    assert [e.version for e in await store.events(0, 2)] == [5, 4]
    assert [e.version for e in await store.events(4, 2)] == [3, 2]
    assert [e.version for e in await store.events(2, 2)] == [1]
    await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="schema version"):
        await store.open(default_state())
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.current()


CHILD = """
import asyncio, sys, time
from dataclasses import replace
from control_service import phases
from control_service.state import default_state
from control_service.store import Change, SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.open(default_state())
    for weight in (11, 12, 13, 14, 15):
        def mutate(snap, weight=weight):
            m = phases.set_weight(phases.promote(snap.state.migration)
                                  if snap.state.migration.phase.name == "FACADE"
                                  else snap.state.migration, weight)
            return Change(replace(snap.state, migration=m), "child", "set_weight", "")
        snap, _ = await store.commit(0, mutate)
        print("ACK", snap.version, weight, flush=True)
    time.sleep(60)  # killed before this returns; the store is never closed

asyncio.run(main())
"""


def test_an_acknowledged_change_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        acks = [proc.stdout.readline().split() for _ in range(5)]
        os.kill(proc.pid, signal.SIGKILL)  # right after the last ack
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    _, last_version, last_weight = acks[-1]
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT version, state_json FROM snapshots ORDER BY version DESC LIMIT 1"
        ).fetchone()
        event = conn.execute("SELECT actor FROM events WHERE version = ?", (row[0],)).fetchone()
    finally:
        conn.close()
    assert row[0] == int(last_version)
    assert json.loads(row[1])["migration"]["split_weight_percent"] == int(last_weight)
    assert event == ("child",)

    async def reopen() -> Snapshot:
        store = await opened(path)
        try:
            snap, _ = await store.commit(0, promote)
            return snap
        finally:
            await store.close()

    assert asyncio.run(reopen()).version == int(last_version) + 1
