"""The desired-state service: applies verbs and flag changes through the store (validated as a
whole, compare-and-set, one transaction) and publishes each new version to the session hub.

Plain Python: the servicer translates protos into the callables used here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace

from control_service import phases, validation
from control_service.errors import StoreError
from control_service.hub import Hub
from control_service.state import (
    AuditEvent,
    ChangeMeta,
    DesiredState,
    Flags,
    Snapshot,
    with_flags,
    with_migration,
)
from control_service.store import Change, Decision, StateStore

DEFAULT_ACTOR = "anonymous"


class Controller:
    """Owns the current :class:`Snapshot`; every change goes through :meth:`change`."""

    def __init__(
        self,
        store: StateStore,
        hub: Hub,
        encode: Callable[[Snapshot], bytes],
        tracer: trace.Tracer | None = None,
    ) -> None:
        # A span per config change (what pushes a new version to every router).
        self._tracer = tracer or trace.NoOpTracer()
        self.store = store
        self.hub = hub
        self._encode = encode
        self._current: Snapshot | None = None
        self.read_through = False

    async def start(self, initial: DesiredState) -> Snapshot:
        """Open the store (``initial`` becomes version 1 of an empty one) and publish."""
        snap = await self.store.open(initial)
        validation.check(snap.state)
        self._publish(snap)
        return snap

    @property
    def current(self) -> Snapshot:
        if self._current is None:
            raise RuntimeError("controller not started")
        return self._current

    async def fresh(self) -> Snapshot:
        """The current snapshot for a read: with ``read_through`` (HA, where another replica
        may have just written) re-read from the store first, so a read after a write on any
        replica sees it; if the store does not answer, what this replica has."""
        if self.read_through:
            with contextlib.suppress(StoreError):
                self.observe(await self.store.current())
        return self.current

    def observe(self, snap: Snapshot) -> None:
        """A version another replica committed (HA: the store's watch); published when newer."""
        self._publish(snap)

    def _publish(self, snap: Snapshot) -> None:
        if self._current is None or snap.version > self._current.version:
            self._current = snap
            self.hub.publish(snap.version, self._encode(snap))

    async def change(
        self,
        action: str,
        meta: ChangeMeta,
        fn: Callable[[DesiredState], DesiredState],
        evidence: Mapping[str, Any] | None = None,
    ) -> Snapshot:
        """Apply ``fn`` to the current state in one store transaction: CAS on
        ``meta.expected_version``, whole-state validation, snapshot + audit event (with
        ``evidence``, when given, in its ``after_json``). A change that changes nothing returns
        the current snapshot without a new version."""

        if meta.actor_note:
            evidence = {**(evidence or {}), "actor_note": meta.actor_note}

        def mutate(cur: Snapshot) -> Change | None:
            new = fn(cur.state)
            if new == cur.state:
                return None
            validation.check(new)
            return Change(new, meta.actor or DEFAULT_ACTOR, action, meta.reason, evidence)

        with self._tracer.start_as_current_span(
            f"config.change {action}",
            attributes={"llmgateway.config.action": action, "llmgateway.actor": meta.actor},
        ) as span:
            before = self.current.version
            snap, _ = await self.store.commit(meta.expected_version, mutate)
            # Also publishes a newer version another writer of the same store committed.
            self._publish(snap)
            span.set_attribute("llmgateway.config.version", snap.version)
            span.set_attribute("llmgateway.config.changed", snap.version != before)
            span.set_attribute("llmgateway.routers_connected", self.hub.connected)
            return snap

    async def migrate(self, verb: phases.Verb, meta: ChangeMeta) -> Snapshot:
        """One operator verb of the phase machine (promote, set_weight, pause, ...)."""
        return await self.change(
            verb.action, meta, lambda s: with_migration(s, phases.apply(s.migration, verb))
        )

    async def update_flags(self, meta: ChangeMeta, fn: Callable[[Flags], Flags]) -> Snapshot:
        return await self.change("update_flags", meta, lambda s: with_flags(s, fn(s.flags)))

    async def events(self, before_version: int, limit: int) -> list[AuditEvent]:
        return await self.store.events(before_version, limit)

    async def event_page(self, before_version: int, limit: int) -> tuple[list[AuditEvent], int]:
        return await self.store.event_page(before_version, limit)

    async def record(self, decision: Decision) -> AuditEvent:
        """An audit event that changes nothing (see :class:`~control_service.store.Decision`)."""
        return await self.store.record(decision)
