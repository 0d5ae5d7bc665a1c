"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Durability: each change is ONE transaction (``BEGIN IMMEDIATE`` → compare-and-set check → new
snapshot row → audit event row → ``COMMIT``); with WAL and ``synchronous=FULL`` the commit is
fsynced before ``commit`` returns, so an acknowledged change survives ``kill -9`` and power loss.
``BEGIN IMMEDIATE`` takes the write lock before reading, so two connections on one file cannot
both pass the version check; one control service per file is enforced on open (a ``flock`` on
``<db>.lock``, ``_upkeep.WriterLock``). Every snapshot row is kept, so ``max(version) + 1`` never
goes backwards across restarts; old ones drop their state and old events go by the retention
(``_upkeep.Retention``). A failed write is a ``StoreError`` (RESOURCE_EXHAUSTED when the disk
or ``max_bytes`` is full), and until a write succeeds again ``ping`` fails, so GetHealth shows
the store DOWN.

Every sqlite call runs on one dedicated thread, off the event loop: the session fan-out needs the
loop free while a commit waits for its fsync.

Schema: ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` are applied in order on
open, each in its own transaction. A file from a newer build is refused, never downgraded.
Events are ordered by (version, seq): a change's event first, then any decisions (dry-run
verdicts, alerts; :meth:`SqliteStore.record`) filed under the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from control_service import state as st
from control_service.errors import StoreError, VersionConflict
from control_service.state import AuditEvent, DesiredState, Snapshot
from control_service.store._base import Decision, Mutation, with_evidence
from control_service.store._upkeep import Retention, WriterLock, prune, write_error

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
    # 2: decision events (dry-run verdicts, alerts) that change no state, so several events may
    # share a version. The table gets its own key (seq, in write order); version stays, indexed,
    # and still names the snapshot current when the event was written.
    (
        """CREATE TABLE events_v2 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            version INTEGER NOT NULL REFERENCES snapshots(version),
            time REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            reason TEXT NOT NULL,
            before_json TEXT NOT NULL,
            after_json TEXT NOT NULL
        )""",
        """INSERT INTO events_v2 (version, time, actor, action, reason, before_json, after_json)
            SELECT version, time, actor, action, reason, before_json, after_json
            FROM events ORDER BY version""",
        "DROP TABLE events",
        "ALTER TABLE events_v2 RENAME TO events",
        "CREATE INDEX events_by_version ON events (version, seq)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
BOOTSTRAP_ACTOR = "control-service"
_EVENT_COLUMNS = "version, time, actor, action, reason, before_json, after_json"


def _event(row: Sequence[Any]) -> AuditEvent:
    return AuditEvent(int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6])


class SqliteStore:
    """:class:`~control_service.store.StateStore` on one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 10,
        *,
        retention: Retention | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self.retention = retention or Retention()
        self._max_bytes = max_bytes
        self._lock = WriterLock(self.path)
        self._pruned_at = -float("inf")
        # Why the last write failed, until one succeeds (ping reports it).
        self.write_failure: str | None = None
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
        return await self._run(self._write, self._commit, expected_version, mutate)

    async def events(self, before_version: int, limit: int) -> list[AuditEvent]:
        return await self._run(self._events, before_version, limit)

    async def event_page(self, before_version: int, limit: int) -> tuple[list[AuditEvent], int]:
        return await self._run(self._event_page, before_version, limit)

    async def record(self, decision: Decision) -> AuditEvent:
        return await self._run(self._write, self._record, decision)

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
        self._lock.acquire()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self._busy_timeout_s)
        except BaseException:
            self._lock.release()
            raise
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot enable WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            if self._max_bytes is not None:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(f"PRAGMA max_page_count = {max(1, self._max_bytes // page)}")
            self._conn = conn
            self._migrate()
            if self._db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchone() is None:
                self._bootstrap(initial)
            return self._current()
        except BaseException:
            self._conn = None
            conn.close()
            self._lock.release()
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
                    f"INSERT INTO events ({_EVENT_COLUMNS})"
                    " VALUES (1, ?, ?, 'init', 'initial state', '{}', ?)",
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
            if change.evidence is not None:
                after = with_evidence(after, change.evidence)
            db.execute(
                "INSERT INTO snapshots (version, created_at, state_json) VALUES (?, ?, ?)",
                (new.version, new.created_at, st.dumps(new.state)),
            )
            db.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            f"SELECT {_EVENT_COLUMNS} FROM events"
            " WHERE (? = 0 OR version < ?) ORDER BY version DESC, seq DESC LIMIT ?",
            (before_version, before_version, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def _event_page(self, before_version: int, limit: int) -> tuple[list[AuditEvent], int]:
        db = self._db
        rows = db.execute(
            f"SELECT seq, {_EVENT_COLUMNS} FROM events"
            " WHERE (? = 0 OR version < ?) ORDER BY version DESC, seq DESC LIMIT ?",
            (before_version, before_version, limit),
        ).fetchall()
        if len(rows) < limit or not rows:
            return [_event(r[1:]) for r in rows], 0
        # Finish the last version on the page, so the next page (older versions) misses none.
        last_seq, last_version = int(rows[-1][0]), int(rows[-1][1])
        rows += db.execute(
            f"SELECT seq, {_EVENT_COLUMNS} FROM events WHERE version = ? AND seq < ?"
            " ORDER BY seq DESC",
            (last_version, last_seq),
        ).fetchall()
        more = db.execute(
            "SELECT 1 FROM events WHERE version < ? LIMIT 1", (last_version,)
        ).fetchone()
        return [_event(r[1:]) for r in rows], last_version if more else 0

    def _record(self, decision: Decision) -> AuditEvent:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT max(version) FROM snapshots").fetchone()
            if row is None or row[0] is None:
                raise StoreError(f"{self.path}: no snapshot")
            event = AuditEvent(
                version=int(row[0]),
                time=self._clock(),
                actor=decision.actor,
                action=decision.action,
                reason=decision.reason,
                before_json="{}",
                after_json=with_evidence("{}", decision.evidence),
            )
            db.execute(
                f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.version,
                    event.time,
                    event.actor,
                    event.action,
                    event.reason,
                    event.before_json,
                    event.after_json,
                ),
            )
            db.execute("COMMIT")
            return event
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _ping(self) -> int:
        row = self._db.execute("SELECT max(version) FROM snapshots").fetchone()
        if self.write_failure is not None:
            raise StoreError(f"the last write failed: {self.write_failure}")
        return int(row[0] or 0)

    def _write(self, fn: Callable[..., T], *args: object) -> T:
        """``fn`` (a write) with its sqlite failures mapped; then the retention, now and then."""
        try:
            out = fn(*args)
        except sqlite3.Error as exc:
            self.write_failure = str(exc)
            raise write_error(self.path, exc) from exc
        self.write_failure = None
        now = self._clock()
        if now - self._pruned_at >= self.retention.every_s:
            self._pruned_at = now
            # The change is stored; a failed pruning is tried again later.
            with contextlib.suppress(sqlite3.Error):
                prune(self._db, self.retention, now)
        return out

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._lock.release()
