"""The one store interface: every backend (SQLite today, etcd later) implements it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from control_service.state import AuditEvent, DesiredState, Snapshot


@dataclass(frozen=True, slots=True)
class Change:
    """What a mutation produced: the new whole state and who did it, for the audit event."""

    state: DesiredState
    actor: str
    action: str
    reason: str


Mutation = Callable[[Snapshot], Change | None]
"""Computes the change from the current snapshot; runs inside the store's transaction, so it
must be pure (it may raise a domain error, which aborts the transaction). None: no change."""


class StateStore(Protocol):
    """Durable, versioned desired state plus its audit log.

    Versions start at 1 (the bootstrap state), grow by one per accepted change and never go
    backwards, also across restarts. ``commit`` is atomic: the compare-and-set check, the new
    snapshot and its audit event are one transaction, and once it returns the change survives a
    crash of the process.
    """

    async def open(self, initial: DesiredState) -> Snapshot:
        """Create or migrate the schema; store ``initial`` as version 1 when empty; return the
        current snapshot."""
        ...

    async def current(self) -> Snapshot: ...

    async def commit(self, expected_version: int, mutate: Mutation) -> tuple[Snapshot, bool]:
        """Apply ``mutate`` to the current snapshot. ``expected_version`` non-zero and not
        current: :class:`~control_service.errors.VersionConflict`, nothing written. Returns the
        resulting snapshot and whether it is a new version (False when nothing changed)."""
        ...

    async def events(self, before_version: int, limit: int) -> list[AuditEvent]:
        """Audit events newest first; ``before_version`` non-zero lists only older ones."""
        ...

    async def ping(self) -> int:
        """A trivial query (the current version), for health checks."""
        ...

    async def close(self) -> None: ...
