"""Issue 21's store cases: two control services on one SQLite file both started and disagreed;
a full disk gave INTERNAL with a traceback per call while GetHealth kept the store OK; every
change stored the whole state and nothing was ever pruned."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2
from control_service.errors import StoreError
from control_service.state import default_state
from control_service.store import Change, Decision, SqliteStore
from control_service.store._upkeep import Retention
from tests.control.conftest import meta, start

P = control_pb2
REPO = Path(__file__).resolve().parents[2]


async def test_two_control_services_on_one_sqlite_file_cannot_both_start(db: Path) -> None:
    first = await start(db)
    try:
        with pytest.raises(
            StoreError, match=f"in use by another control service \\(pid {os.getpid()}"
        ):
            await start(db)
        # Another process is refused the same way, and says so.
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "control_service.main", "--port", "0", "--db", str(db)],
            cwd=REPO,
            env={**os.environ, "LLM_CONTROL_INSECURE": "true"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode != 0
        assert "in use by another control service" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        await first.close()
    second = await start(db)  # released on close
    await second.close()


async def test_a_full_disk_is_resource_exhausted_and_shows_in_health(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = await start(db, store_max_mb=0.1)  # a 100 kB cap stands in for a full disk
    try:
        await c.stub.Promote(P.PromoteRequest(meta=meta()))
        health = await c.stub.GetHealth(P.GetHealthRequest())
        assert health.status == P.HEALTH_STATUS_OK

        async def fill() -> None:
            for i in range(500):  # pause and resume until the file is full
                await c.stub.Pause(P.PauseRequest(meta=meta(reason=f"{i}" + "r" * 1000)))
                await c.stub.Resume(P.ResumeRequest(meta=meta()))

        with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as exc:
            await fill()
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "full" in (exc.value.details() or "")
        assert not [r for r in caplog.records if r.exc_info]  # no traceback per call
        health = await c.stub.GetHealth(P.GetHealthRequest())
        store = next(x for x in health.components if x.name == "store")
        assert store.status == P.HEALTH_STATUS_DOWN
        assert "last write failed" in store.detail
        assert health.status == P.HEALTH_STATUS_DOWN
    finally:
        await c.close()


def _weight(w: int) -> object:
    from dataclasses import replace

    from control_service import phases

    def mutate(snap: object) -> Change:
        s = snap.state  # type: ignore[attr-defined]
        m = s.migration
        if m.phase.name == "FACADE":
            m = phases.promote(m)
        return Change(replace(s, migration=phases.set_weight(m, w)), "op", "set_weight", "")

    return mutate


async def test_old_versions_and_decisions_are_pruned_and_the_audit_kept_longer(
    tmp_path: Path,
) -> None:
    import sqlite3

    now = [1_000_000.0]
    retention = Retention(
        keep_versions=3, decision_retention_s=100, audit_retention_s=1000, every_s=0
    )
    store = SqliteStore(tmp_path / "r.db", clock=lambda: now[0], retention=retention)
    await store.open(default_state())
    await store.record(Decision("loop", "dry_run", "old verdict", {}))
    for w in range(11, 19):
        now[0] += 10
        await store.commit(0, _weight(w))  # type: ignore[arg-type]
    now[0] += 200  # the decision is past its 100 s; the changes are within 1000 s
    await store.commit(0, _weight(40))  # type: ignore[arg-type]
    conn = sqlite3.connect(tmp_path / "r.db")
    try:
        kept = conn.execute("SELECT version FROM snapshots WHERE state_json != ''").fetchall()
        rows = conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
    finally:
        conn.close()
    assert [v for (v,) in kept] == [8, 9, 10]  # the newest three keep their state
    assert rows == 10  # every version keeps its row: versions never go backwards
    actions = [e.action for e in await store.events(0, 100)]
    assert "dry_run" not in actions
    assert actions.count("set_weight") == 9
    assert "init" in actions
    now[0] += 2000  # past the audit's 1000 s: only the current version's event stays
    await store.commit(0, _weight(41))  # type: ignore[arg-type]
    assert [e.version for e in await store.events(0, 100)] == [11]
    assert (await store.current()).state.migration.split_weight_percent == 41
    await store.close()


def test_retention_settings_keep_the_audit_longer() -> None:
    from pydantic import ValidationError

    from control_service.settings import ControlSettings

    with pytest.raises(ValidationError, match="shorter"):
        ControlSettings(store_decision_retention_days=30, store_audit_retention_days=7)
    assert ControlSettings(store_audit_retention_days=0).retention().audit_retention_s == 0
