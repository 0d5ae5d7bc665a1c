"""Leader election on etcd with a lease, as Patroni does it.

Each replica holds one lease (``ttl_s``), kept alive every ``ttl_s / 3``. Leadership is one
transaction: *if the leadership key does not exist* (``create_revision == 0``), put it with this
replica's :class:`LeaderRecord` on the lease. The key's ``create_revision`` is the leader's
**term**; the store's :class:`~control_service.store.etcd.Fence` compares it on every write, so
only the replica whose election created the key can write (fencing).

Followers watch the key; its deletion (the leader's lease expired, or it resigned) starts a new
campaign at once, so a dead leader is replaced within the TTL plus one round trip.

Stepping down: a keep-alive that reports the lease gone, or no successful keep-alive for the
whole TTL (etcd unreachable, or this process was paused), ends leadership locally *before* it
acts again; if it acts anyway (a paused process resumes mid-step), the fence refuses the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from control_service.errors import StoreError
from control_service.leadership.record import LeaderRecord
from control_service.store.etcd import Fence
from control_service.store.etcd_client import Compare, EtcdClient, Put

log = logging.getLogger(__name__)

NO_TERM = -1  # a create_revision no key has: a fence on it refuses every write


@dataclass(frozen=True, slots=True)
class LeadershipView:
    """What this replica knows: whether it leads, who does, and the term (0: none known)."""

    is_leader: bool
    leader: LeaderRecord | None
    term: int


class Elector:
    def __init__(
        self,
        client: EtcdClient,
        key: bytes,
        me: LeaderRecord,
        ttl_s: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.key = key
        self.me = me
        self.ttl_s = ttl_s
        self._clock = clock
        self.view = LeadershipView(False, None, 0)
        # Called on every change of ``view`` (elected, deposed, a new leader elsewhere).
        self.listeners: list[Callable[[LeadershipView], None]] = []
        self.changes = 0
        self._task: asyncio.Task[None] | None = None
        self._lease = 0
        self._changed = asyncio.Event()

    @property
    def fence(self) -> Fence:
        """The guard for this replica's writes: its term while it leads, else one that no
        write passes."""
        return Fence(self.key, self.view.term if self.view.is_leader else NO_TERM)

    def _set(self, view: LeadershipView) -> None:
        if view == self.view:
            return
        was = self.view
        self.view = view
        self.changes += 1
        if view.is_leader and not was.is_leader:
            log.warning("elected leader (term %d) as %s", view.term, self.me.replica_id)
        elif was.is_leader and not view.is_leader:
            log.warning("no longer the leader (term %d ended)", was.term)
        for listener in self.listeners:
            listener(view)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[LeadershipView], bool]) -> LeadershipView:
        while not predicate(self.view):
            await self._changed.wait()
        return self.view

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self, resign: bool = True) -> None:
        """Stop campaigning; ``resign``: revoke the lease so a follower takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set(LeadershipView(False, self.view.leader if not self.view.is_leader else None, 0))
        if resign and self._lease:
            with contextlib.suppress(StoreError):
                await asyncio.wait_for(self._client.revoke(self._lease), 2.0)
            self._lease = 0

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._term()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd trouble: step down, retry
                log.warning("leader election interrupted: %s", exc)
            self._set(LeadershipView(False, None, 0))
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    async def _term(self) -> None:
        """One lease: campaign, lead or follow, until the lease is lost."""
        if self._lease:
            # The last term's lease, given up locally: revoke it, so its key (if etcd still has
            # it) goes now rather than after a TTL in which nobody would lead.
            with contextlib.suppress(StoreError):
                await self._client.revoke(self._lease)
            self._lease = 0
        sent = self._clock()
        self._lease = await self._client.grant(self.ttl_s)
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_alive(self._lease, sent, lost))
        try:
            while not lost.is_set():
                ok, revision, reads = await self._client.txn(
                    [Compare(self.key, "create", 0)],
                    [Put(self.key, self.me.to_bytes(), self._lease)],
                    on_failure=[self.key],
                )
                if lost.is_set():
                    return  # the lease ran out while campaigning: this term is over
                if ok:
                    self._set(LeadershipView(True, self.me, revision))
                    watch_from = revision + 1
                else:
                    held = reads[0]
                    if held is None:
                        continue  # deleted in between: campaign again
                    rec = LeaderRecord.from_bytes(held.value)
                    mine = rec.replica_id == self.me.replica_id and held.lease == self._lease
                    self._set(LeadershipView(mine, rec, held.create_revision))
                    watch_from = held.mod_revision + 1
                await self._until_vacant(watch_from, lost)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _until_vacant(self, from_revision: int, lost: asyncio.Event) -> None:
        """Return when the key is deleted (campaign again) or the lease is lost."""

        async def watch() -> None:
            revision = from_revision
            while True:
                try:
                    async for ev in self._client.watch(self.key, start_revision=revision):
                        revision = ev.kv.mod_revision + 1
                        if ev.kind == "delete":
                            return
                        if not self.view.is_leader:
                            rec = LeaderRecord.from_bytes(ev.kv.value)
                            self._set(LeadershipView(False, rec, ev.kv.create_revision))
                    continue
                except StoreError as exc:
                    # The member serving the watch went away: the lease (kept alive on its
                    # own) decides this term, not the watch. Look again and re-watch.
                    log.info("leadership watch broke (%s); re-watching", exc)
                await asyncio.sleep(0.1)
                try:
                    held = await self._client.get(self.key)
                except StoreError:
                    continue
                if held is None:
                    return
                revision = max(revision, held.mod_revision + 1)

        watcher = asyncio.create_task(watch())
        loser = asyncio.create_task(lost.wait())
        try:
            done, _ = await asyncio.wait({watcher, loser}, return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                watcher.result()
        finally:
            for t in (watcher, loser):
                t.cancel()
            await asyncio.gather(watcher, loser, return_exceptions=True)

    async def _keep_alive(self, lease: int, granted_at: float, lost: asyncio.Event) -> None:
        """Refresh ``lease`` every TTL/3; set ``lost`` (and step down at once) when etcd says
        it is gone or no refresh succeeded for a whole TTL."""
        deadline = granted_at + self.ttl_s
        interval = self.ttl_s / 3
        try:
            while True:
                await asyncio.sleep(max(0.0, min(interval, deadline - self._clock())))
                if self._clock() >= deadline:
                    log.warning("lease %x not refreshed for its %ds TTL", lease, self.ttl_s)
                    return
                sent = self._clock()
                try:
                    left = await asyncio.wait_for(
                        self._client.keepalive(lease), max(0.05, deadline - sent)
                    )
                except (StoreError, TimeoutError) as exc:
                    log.info("lease keep-alive failed: %s", exc)
                    continue
                if left <= 0:
                    log.warning("lease %x expired", lease)
                    return
                deadline = sent + left
        finally:
            if self.view.is_leader:
                self._set(LeadershipView(False, None, 0))
            lost.set()
