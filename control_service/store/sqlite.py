"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Durability: each change is ONE transaction (``BEGIN IMMEDIATE`` → compare-and-set check → new
snapshot row → audit event row → ``COMMIT``); with WAL and ``synchronous=FULL`` the commit is
fsynced before ``commit`` returns, so an acknowledged change survives ``kill -9`` and power loss.
``BEGIN IMMEDIATE`` takes the write lock before reading, so two processes on one file cannot both
pass the version check. Every snapshot is kept (the history), so ``max(version) + 1`` never goes
backwards across restarts.

Every sqlite call runs on one dedicated thread, off the event loop: the session fan-out needs the
loop free while a commit waits for its fsync.

Schema: ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` are applied in order on
open, each in its own transaction. A file from a newer build is refused, never downgraded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from control_service import state as st
from control_service.errors import StoreError, VersionConflict
from control_service.state import AuditEvent, DesiredState, Snapshot
from control_service.store._base import Mutation

T = TypeVar("T")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: snapshots (one row per version) and the audit log (one event per version).
    (
        """CREATE TABLE snapshots (
            version INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            state_json TEXT NOT NULL
        )""",
        """CREATE TABLE events (
            version INTEGER PRIMARY KEY REFERENCES snapshots(version),
            time REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL,
            before_json TEXT NOT NULL,
            after_json TEXT NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
BOOTSTRAP_ACTOR = "control-service"


class SqliteStore:
    """:class:`~control_service.store.StateStore` on one SQLite file."""

    def __init__(
        self, path: Path | str, clock: Callable[[], float] = time.time, busy_timeout_s: float = 10
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    # --- StateStore ------------------------------------------------------------------------

    async def open(self, initial: DesiredState) -> Snapshot:
        return await self._run(self._open, initial)

    async def current(self) -> Snapshot:
        return await self._run(self._current)

    async def commit(self, expected_version: int, mutate: Mutation) -> tuple[Snapshot, bool]:
        return await self._run(self._commit, expected_version, mutate)

    async def events(self, before_version: int, limit: int) -> list[AuditEvent]:
        return await self._run(self._events, before_version, limit)

    async def ping(self) -> int:
        return await self._run(self._ping)

    async def close(self) -> None:
        if self._closed:
            return
        if self._conn is not None:
            await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)

    # --- on the store thread ---------------------------------------------------------------

    def _open(self, initial: DesiredState) -> Snapshot:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_timeout_s)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate()
            if self._db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchone() is None:
                self._bootstrap(initial)
            return self._current()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _migrate(self) -> None:
        db = self._db
        have = int(db.execute("PRAGMA user_version").fetchone()[0])
        if have > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {have}; this build knows up to {SCHEMA_VERSION}"
            )
        for version in range(have + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                # Re-read under the write lock: another process may have migrated meanwhile.
                if int(db.execute("PRAGMA user_version").fetchone()[0]) >= version:
                    db.execute("ROLLBACK")
                    continue
                for statement in MIGRATIONS[version - 1]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _bootstrap(self, initial: DesiredState) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchone() is None:
                now = self._clock()
                db.execute(
                    "INSERT INTO snapshots (version, created_at, state_json) VALUES (1, ?, ?)",
                    (now, st.dumps(initial)),
                )
                db.execute(
                    "INSERT INTO events VALUES (1, ?, ?, 'init', 'initial state', '{}', ?)",
                    (now, BOOTSTRAP_ACTOR, st.dumps(initial)),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _current(self) -> Snapshot:
        row = self._db.execute(
            "SELECT version, created_at, state_json FROM snapshots ORDER BY version DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no snapshot")
        try:
            state = st.loads(row[2])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.path}: version {row[0]} is unreadable: {exc}") from exc
        return Snapshot(int(row[0]), state, float(row[1]))

    def _commit(self, expected_version: int, mutate: Mutation) -> tuple[Snapshot, bool]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            current = self._current()
            if expected_version and expected_version != current.version:
                raise VersionConflict(expected_version, current.version)
            change = mutate(current)
            if change is None or change.state == current.state:
                db.execute("ROLLBACK")
                return current, False
            new = Snapshot(current.version + 1, change.state, self._clock())
            before, after = st.changed_parts(current.state, change.state)
            db.execute(
                "INSERT INTO snapshots (version, created_at, state_json) VALUES (?, ?, ?)",
                (new.version, new.created_at, st.dumps(new.state)),
            )
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    new.version,
                    new.created_at,
                    change.actor,
                    change.action,
                    change.reason,
                    before,
                    after,
                ),
            )
            db.execute("COMMIT")
            return new, True
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _events(self, before_version: int, limit: int) -> list[AuditEvent]:
        rows = self._db.execute(
            "SELECT version, time, actor, action, reason, before_json, after_json FROM events"
            " WHERE (? = 0 OR version < ?) ORDER BY version DESC LIMIT ?",
            (before_version, before_version, limit),
        ).fetchall()
        return [AuditEvent(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def _ping(self) -> int:
        row = self._db.execute("SELECT max(version) FROM snapshots").fetchone()
        return int(row[0] or 0)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
