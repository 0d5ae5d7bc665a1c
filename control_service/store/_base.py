"""The one store interface: every backend (SQLite today, etcd later) implements it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from control_service.state import AuditEvent, DesiredState, Snapshot


@dataclass(frozen=True, slots=True)
class Change:
    """What a mutation produced: the new whole state and who did it, for the audit event.
    ``evidence`` (a decision's data, e.g. an automatic rollback's rule values) is stored in the
    event's ``after_json`` under the key ``"evidence"``, next to the changed state."""

    state: DesiredState
    actor: str
    action: str
    reason: str
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """An audit event that changes no state (a dry-run verdict, an alert): it is filed under the
    version current when it is written, after that version's own event."""

    actor: str
    action: str
    reason: str
    evidence: Mapping[str, Any]


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

    async def event_page(self, before_version: int, limit: int) -> tuple[list[AuditEvent], int]:
        """One page of :meth:`events` that never splits a version's events (a version has its
        change event plus any decisions filed under it), so it may hold a few more than
        ``limit``; and the ``before_version`` of the next page (0: no more)."""
        ...

    async def record(self, decision: Decision) -> AuditEvent:
        """Append a decision event under the current version (durable when it returns)."""
        ...

    async def ping(self) -> int:
        """A trivial query (the current version), for health checks."""
        ...

    async def close(self) -> None: ...


def with_evidence(after_json: str, evidence: Mapping[str, Any]) -> str:
    """An audit event's ``after_json`` with a decision's evidence under ``"evidence"`` (the
    same in every store)."""
    after = json.loads(after_json)
    after["evidence"] = dict(evidence)
    return json.dumps(after, sort_keys=True)
