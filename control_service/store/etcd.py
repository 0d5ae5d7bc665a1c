"""The distributed store: desired state and audit log in an etcd v3 cluster.

Key layout under ``prefix`` (default ``/llmgateway``)::

    {prefix}/schema                  layout version (SCHEMA_VERSION); a newer one is refused
    {prefix}/state                   the current snapshot {version, created_at, state_json}
    {prefix}/snapshots/{version:012} every accepted snapshot (the history, as in SQLite)
    {prefix}/events/{version:012}/{seq:012}   audit events, one key each
    {prefix}/event_seq               the last event seq (orders events across versions)
    {prefix}/leader                  the leadership key (control_service.leadership)

Compare-and-set: a commit reads ``state`` and ``event_seq`` at one revision, computes the
change, then writes the new ``state``, its history snapshot, its event and the new
``event_seq`` in ONE transaction guarded by both keys' ``mod_revision`` (nothing else wrote in
between) and, when a :class:`Fence` is set, by the leadership key's ``create_revision`` (this
replica still holds the leadership it was elected with). etcd applies the transaction through
raft, so when ``commit`` returns a quorum has it on disk: an acknowledged change survives the
loss of any minority of members and of this process.

Events are ordered by (version, seq): seq is bumped in the same guarded transaction as the
event, so seq order is etcd's revision order, and the keys sort that way (zero-padded), so a
descending key range is the audit log newest first.

:meth:`EtcdStore.snapshots` follows ``state`` with an etcd watch from the revision last read,
so every replica sees every committed version, in order, without polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from control_service import state as st
from control_service.errors import NotLeader, StoreError, VersionConflict
from control_service.leadership.record import LeaderRecord
from control_service.state import AuditEvent, DesiredState, Snapshot
from control_service.store._base import Decision, Mutation, with_evidence
from control_service.store.etcd_client import KV, Compare, EtcdClient, Put, prefix_end

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BOOTSTRAP_ACTOR = "control-service"
MAX_ATTEMPTS = 100  # optimistic retries of one commit under contention


@dataclass(frozen=True, slots=True)
class Fence:
    """Writes succeed only while ``key`` was created at ``create_revision`` (the elected
    leadership is still this replica's)."""

    key: bytes
    create_revision: int


def _snapshot_value(s: Snapshot) -> bytes:
    doc = {"version": s.version, "created_at": s.created_at, "state_json": st.dumps(s.state)}
    return json.dumps(doc).encode()


def _event_value(e: AuditEvent, seq: int) -> bytes:
    return json.dumps(
        {
            "version": e.version,
            "seq": seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action,
            "reason": e.reason,
            "before_json": e.before_json,
            "after_json": e.after_json,
        }
    ).encode()


def _event(kv: KV) -> AuditEvent:
    d = json.loads(kv.value)
    return AuditEvent(
        int(d["version"]),
        float(d["time"]),
        d["actor"],
        d["action"],
        d["reason"],
        d["before_json"],
        d["after_json"],
    )


class EtcdStore:
    """:class:`~control_service.store.StateStore` on an etcd cluster (see the module doc)."""

    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "/llmgateway",
        clock: Callable[[], float] = time.time,
        client: EtcdClient | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/")
        p = self.prefix.encode()
        self.k_schema = p + b"/schema"
        self.k_state = p + b"/state"
        self.k_seq = p + b"/event_seq"
        self.k_leader = p + b"/leader"
        self.k_events = p + b"/events/"
        self.k_stats = p + b"/stats/"
        self._snap_fmt = p + b"/snapshots/%012d"
        self.client = client if client is not None else EtcdClient(endpoints)
        self._clock = clock
        # Set by the leader election: every write is conditioned on it (fencing).
        self.fence: Fence | None = None
        self._revision = 0  # the etcd revision of the newest snapshot read
        self.fenced_writes = 0  # writes refused by the fence (metrics)
        self._closed = False

    def _event_key(self, version: int, seq: int) -> bytes:
        return self.k_events + b"%012d/%012d" % (version, seq)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _decode(self, kv: KV | None) -> Snapshot:
        if kv is None:
            raise StoreError(f"etcd {self.prefix}: no snapshot")
        try:
            d = json.loads(kv.value)
            snap = Snapshot(int(d["version"]), st.loads(d["state_json"]), float(d["created_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"etcd {self.prefix}: current state is unreadable: {exc}") from exc
        self._revision = max(self._revision, kv.mod_revision)
        return snap

    def _guards(self) -> list[Compare]:
        f = self.fence
        return [] if f is None else [Compare(f.key, "create", f.create_revision)]

    def _fenced(self, leader: KV | None) -> bool:
        f = self.fence
        return f is not None and (leader is None or leader.create_revision != f.create_revision)

    def _not_leader(self, leader: KV | None) -> NotLeader:
        self.fenced_writes += 1
        rec = LeaderRecord.from_bytes(leader.value) if leader is not None else LeaderRecord("", "")
        f = self.fence
        why = (
            "this replica is not the leader"
            if f is None or f.create_revision < 0
            else "this replica's leadership ended; the write was refused (fenced)"
        )
        if rec.address:
            why += f"; the leader is {rec.replica_id} at {rec.address}"
        return NotLeader(
            why,
            leader_id=rec.replica_id,
            leader_address=rec.address,
        )

    # --- StateStore ------------------------------------------------------------------------

    async def open(self, initial: DesiredState) -> Snapshot:
        self._check_open()
        await self.client.connect()
        schema = await self.client.get(self.k_schema)
        if schema is not None and int(schema.value) > SCHEMA_VERSION:
            raise StoreError(
                f"etcd {self.prefix} has schema version {int(schema.value)}; "
                f"this build knows up to {SCHEMA_VERSION}"
            )
        now = self._clock()
        first = Snapshot(1, initial, now)
        init = AuditEvent(1, now, BOOTSTRAP_ACTOR, "init", "initial state", "{}", st.dumps(initial))
        # Only when empty (create_revision 0 = absent); a concurrent opener's bootstrap wins.
        await self.client.txn(
            [Compare(self.k_state, "create", 0)],
            [
                Put(self.k_schema, str(SCHEMA_VERSION).encode()),
                Put(self.k_state, _snapshot_value(first)),
                Put(self._snap_fmt % 1, _snapshot_value(first)),
                Put(self._event_key(1, 1), _event_value(init, 1)),
                Put(self.k_seq, b"1"),
            ],
        )
        return await self.current()

    async def current(self) -> Snapshot:
        self._check_open()
        return self._decode(await self.client.get(self.k_state))

    async def commit(self, expected_version: int, mutate: Mutation) -> tuple[Snapshot, bool]:
        self._check_open()
        for _ in range(MAX_ATTEMPTS):
            _, (state_kv, seq_kv) = await self.client.read([self.k_state, self.k_seq])
            current = self._decode(state_kv)
            if expected_version and expected_version != current.version:
                raise VersionConflict(expected_version, current.version)
            change = mutate(current)
            if change is None or change.state == current.state:
                return current, False
            new = Snapshot(current.version + 1, change.state, self._clock())
            before, after = st.changed_parts(current.state, change.state)
            if change.evidence is not None:
                after = with_evidence(after, change.evidence)
            seq = int(seq_kv.value) + 1 if seq_kv is not None else 1
            event = AuditEvent(
                new.version, new.created_at, change.actor, change.action, change.reason,
                before, after,
            )  # fmt: skip
            assert state_kv is not None
            ok, revision, reads = await self.client.txn(
                [
                    Compare(self.k_state, "mod", state_kv.mod_revision),
                    Compare(self.k_seq, "mod", seq_kv.mod_revision if seq_kv else 0),
                    *self._guards(),
                ],
                [
                    Put(self.k_state, _snapshot_value(new)),
                    Put(self._snap_fmt % new.version, _snapshot_value(new)),
                    Put(self._event_key(new.version, seq), _event_value(event, seq)),
                    Put(self.k_seq, str(seq).encode()),
                ],
                on_failure=[self.k_leader],
            )
            if ok:
                self._revision = max(self._revision, revision)
                return new, True
            if self._fenced(reads[0]):
                raise self._not_leader(reads[0])
            # Another writer got in between: judge again on what it wrote.
        raise StoreError(f"etcd {self.prefix}: commit gave up after {MAX_ATTEMPTS} conflicts")

    async def record(self, decision: Decision) -> AuditEvent:
        return await self._append(decision, fenced=True)

    async def note(self, decision: Decision) -> AuditEvent:
        """An audit event of what this replica observed (a router expired, a router's stats
        refused), written whether or not it leads: it decides nothing, so it is not fenced."""
        return await self._append(decision, fenced=False)

    async def _append(self, decision: Decision, *, fenced: bool) -> AuditEvent:
        self._check_open()
        for _ in range(MAX_ATTEMPTS):
            _, (state_kv, seq_kv) = await self.client.read([self.k_state, self.k_seq])
            current = self._decode(state_kv)
            assert state_kv is not None
            seq = int(seq_kv.value) + 1 if seq_kv is not None else 1
            event = AuditEvent(
                version=current.version,
                time=self._clock(),
                actor=decision.actor,
                action=decision.action,
                reason=decision.reason,
                before_json="{}",
                after_json=with_evidence("{}", decision.evidence),
            )
            ok, _, reads = await self.client.txn(
                [
                    Compare(self.k_state, "mod", state_kv.mod_revision),
                    Compare(self.k_seq, "mod", seq_kv.mod_revision if seq_kv else 0),
                    *(self._guards() if fenced else ()),
                ],
                [
                    Put(self._event_key(current.version, seq), _event_value(event, seq)),
                    Put(self.k_seq, str(seq).encode()),
                ],
                on_failure=[self.k_leader],
            )
            if ok:
                return event
            if fenced and self._fenced(reads[0]):
                raise self._not_leader(reads[0])
        raise StoreError(f"etcd {self.prefix}: record gave up after {MAX_ATTEMPTS} conflicts")

    async def events(self, before_version: int, limit: int) -> list[AuditEvent]:
        self._check_open()
        end = self.k_events + b"%012d" % before_version if before_version else None
        kvs = await self.client.range(
            self.k_events, end or prefix_end(self.k_events), limit=limit, descending=True
        )
        return [_event(kv) for kv in kvs]

    async def event_page(self, before_version: int, limit: int) -> tuple[list[AuditEvent], int]:
        self._check_open()
        end = self.k_events + b"%012d" % before_version if before_version else None
        kvs = await self.client.range(
            self.k_events, end or prefix_end(self.k_events), limit=limit, descending=True
        )
        if len(kvs) < limit or not kvs:
            return [_event(kv) for kv in kvs], 0
        # Finish the last version on the page, so the next page (older versions) misses none.
        last = json.loads(kvs[-1].value)
        last_version, last_seq = int(last["version"]), int(last["seq"])
        kvs += await self.client.range(
            self.k_events + b"%012d/" % last_version,
            self._event_key(last_version, last_seq),
            descending=True,
        )
        older = await self.client.range(
            self.k_events, self.k_events + b"%012d" % last_version, limit=1
        )
        return [_event(kv) for kv in kvs], last_version if older else 0

    @property
    def closed(self) -> bool:
        return self._closed

    async def ping(self) -> int:
        return (await self.current()).version

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.client.close()

    # --- beyond the protocol: every replica follows the state ------------------------------

    async def snapshots(self, retry_s: float = 0.2) -> AsyncIterator[Snapshot]:
        """Every snapshot committed after the last one read, in version order, each once,
        forever (until cancelled or closed). A broken watch (a member lost) is re-established
        from the last revision seen, after re-reading the current state: nothing is missed."""
        last = 0
        while not self._closed:
            try:
                async for ev in self.client.watch(self.k_state, start_revision=self._revision + 1):
                    if ev.kind == "put" and (snap := self._decode(ev.kv)).version > last:
                        last = snap.version
                        yield snap
                if self.closed:
                    return
            except StoreError as exc:
                if self.closed:
                    return
                log.warning("etcd state watch broke (%s); re-watching", exc)
            await asyncio.sleep(retry_s)
            try:
                # Catch up (the watch resumes from this revision + 1 either way).
                snap = await self.current()
            except StoreError as exc:
                log.warning("etcd state re-read failed: %s", exc)
                continue
            if snap.version > last:
                last = snap.version
                yield snap
