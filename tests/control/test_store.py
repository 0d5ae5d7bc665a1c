"""What is SQLite's own in the SQLite store (the contract every store keeps is in
tests/control/store_contract): WAL and schema pragmas, a newer schema refused, and a kill -9
right after an acknowledged commit."""

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
from control_service.errors import StoreError
from control_service.state import DesiredState, Snapshot, default_state
from control_service.store import SCHEMA_VERSION, Change, SqliteStore

REPO = Path(__file__).resolve().parents[2]


def promote(snap: Snapshot) -> Change:
    state = replace(snap.state, migration=phases.promote(snap.state.migration))
    return Change(state, "tester", "promote", "test")


async def opened(path: Path, initial: DesiredState | None = None) -> SqliteStore:
    store = SqliteStore(path)
    await store.open(initial or default_state())
    return store


async def test_sqlite_settings(tmp_path: Path) -> None:
    store = await opened(tmp_path / "c.db")
    await store.close()
    conn = sqlite3.connect(tmp_path / "c.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


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
