"""The SQLite store's upkeep (issue 21): one writer per file, retention, write failures.

* :class:`WriterLock`: an exclusive ``flock`` on ``<db>.lock``, taken on open and held until
  close (the kernel drops it when the process dies, ``kill -9`` included). A second control
  service on the same file is refused at start with the holder's pid, instead of both running
  and disagreeing about the fleet's state. ``flock`` locks are per open file, so this holds
  between two stores in one process too.
* :class:`Retention`: the store used to keep every snapshot's whole state and every event for
  ever. Snapshots older than the newest ``keep_versions`` keep their row (versions never go
  backwards, events still name them) but drop their state; decision events (dry-run verdicts,
  alerts, router expiries: the noisy ones) go after ``decision_retention_s``; the audit trail of
  changes after ``audit_retention_s`` (0: never), always longer. The current version's events
  stay whatever their age.
* :func:`write_error`: a failed write (disk full, I/O error) becomes a :class:`StoreError`,
  RESOURCE_EXHAUSTED for a full disk or size cap, UNAVAILABLE otherwise: never INTERNAL with a
  traceback per call.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from control_service.errors import StoreError

DAY = 86_400.0


class WriterLock:
    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.path.with_suffix('')} is in use by another control service (pid "
                f"{holder}): one writer per store; stop it, or give this one its own db_path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


@dataclass(frozen=True, slots=True)
class Retention:
    keep_versions: int = 1000
    decision_retention_s: float = 30 * DAY
    audit_retention_s: float = 365 * DAY
    # Pruning runs after a write at most this often.
    every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.keep_versions < 1:
            raise ValueError("keep_versions must be at least 1")
        if self.audit_retention_s and self.audit_retention_s < self.decision_retention_s:
            raise ValueError("the audit trail is kept at least as long as decisions")


def prune(db: sqlite3.Connection, retention: Retention, now: float) -> tuple[int, int]:
    """One transaction; returns (snapshots emptied, events deleted)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        emptied = db.execute(
            "UPDATE snapshots SET state_json = '' WHERE state_json != ''"
            " AND version <= (SELECT max(version) FROM snapshots) - ?",
            (retention.keep_versions,),
        ).rowcount
        current = "(SELECT max(version) FROM snapshots)"
        deleted = db.execute(
            "DELETE FROM events WHERE time < ? AND version < " + current + " AND seq NOT IN"
            " (SELECT min(seq) FROM events GROUP BY version)",
            (now - retention.decision_retention_s,),
        ).rowcount
        if retention.audit_retention_s:
            deleted += db.execute(
                "DELETE FROM events WHERE time < ? AND version < " + current,
                (now - retention.audit_retention_s,),
            ).rowcount
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return emptied, deleted


def write_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The caller's view of a failed write."""
    code = getattr(exc, "sqlite_errorcode", None)
    full = code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()
    what = "the disk or the store's size cap is full" if full else "the write failed"
    return StoreError(f"{path}: {what} ({exc}); nothing was changed", exhausted=full)
