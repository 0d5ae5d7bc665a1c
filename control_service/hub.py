"""The session hub: the current encoded snapshot, fan-out to every router session, and the
per-router bookkeeping (xDS-style fleet view: connected since, last seen, last sent, applied,
last NACK).

Fan-out follows Ray Serve's long poll: the hub holds one :class:`Published` (version + the
``RouterSessionResponse`` bytes, serialized once per version); :meth:`Hub.publish` swaps it and
sets each open session's wake event, O(1) per session. Each session task then writes the same
bytes. A session that falls behind (a slow router) skips intermediate versions and gets the
latest: snapshots are complete, so only the newest matters. A version is never re-sent to a
session that already has it, also not after a reconnect (the router's hello carries its
applied version).

Records are bounded (``max_routers``) and expire: a router disconnected for ``expiry_s`` is
dropped (``on_expire`` is told, and files an audit event), so after a rolling deploy the dead
pods leave ``llmctl routers`` and stop holding ``GetHealth`` at DEGRADED. Expiry is checked on
every connect, disconnect and view. One live session per router id: a second one with the same
id is refused while the first was seen within ``takeover_s``, unless it carries the first's
``instance_id`` (the same process reconnecting), so two routers sharing an id cannot take it
from each other for ever.

Plain asyncio; no grpc: the servicer owns the stream and calls in here.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from llmcore.notify import ChangeNotifier


class IdInUse(Exception):
    """A live session holds the router id (ALREADY_EXISTS for the newcomer)."""


class HubFull(Exception):
    """``max_routers`` connected routers: no room for another id (RESOURCE_EXHAUSTED)."""


class RouterView(enum.Enum):
    """The control service's view of one router (``RouterInfo.state``)."""

    SYNCED = "synced"  # connected and ACKed the current version
    BEHIND = "behind"  # connected, current version sent or pending, not yet ACKed (STALE)
    REFUSED = "refused"  # connected and NACKed the current version (ERROR)
    DISCONNECTED = "disconnected"


@dataclass
class RouterRecord:
    router_id: str
    address: str = ""
    connected: bool = False
    connected_since: float = 0.0
    last_seen: float = 0.0
    last_sent_version: int = 0
    applied_version: int = 0
    last_nack_version: int = 0
    last_nack_reason: str = ""
    sessions: int = 0
    instance_id: str = ""
    # When the last session ended (0 while connected); expiry counts from here.
    disconnected_at: float = 0.0

    def view(self, current_version: int) -> RouterView:
        if not self.connected:
            return RouterView.DISCONNECTED
        if self.applied_version == current_version:
            return RouterView.SYNCED
        if self.last_nack_version == current_version:
            return RouterView.REFUSED
        return RouterView.BEHIND


@dataclass(frozen=True, slots=True)
class Published:
    version: int
    payload: bytes


@dataclass(eq=False)
class Session:
    """One open RouterSession as the hub sees it."""

    record: RouterRecord
    last_sent: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    # A newer session of the same router replaced this one (a reconnect, or a duplicate id).
    superseded: bool = False
    # Why the service ended this session (an untrustworthy stats report), when it did.
    refused: tuple[Any, ...] | None = None


class Hub:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        expiry_s: float = 600.0,
        max_routers: int = 1000,
        takeover_s: float = 30.0,
        on_expire: Callable[[RouterRecord], None] | None = None,
    ) -> None:
        self._clock = clock
        self.expiry_s = expiry_s
        self.max_routers = max_routers
        self.takeover_s = takeover_s
        # Told of each record dropped (app: files an audit event, control_service.session).
        self.on_expire = on_expire
        self.current: Published | None = None
        self._records: dict[str, RouterRecord] = {}
        self._sessions: dict[str, Session] = {}
        self._changed = ChangeNotifier()
        self._shut = False

    # --- snapshots -------------------------------------------------------------------------

    def publish(self, version: int, payload: bytes) -> bool:
        """Make ``version`` current and wake every session; an older version is ignored."""
        if self.current is not None and version <= self.current.version:
            return False
        self.current = Published(version, payload)
        for s in self._sessions.values():
            s.wake.set()
        self._notify()
        return True

    async def next_to_send(self, session: Session) -> Published | None:
        """Wait until the current version differs from what ``session`` last got; None once the
        session is closed (superseded, ended or the hub shut down)."""
        while True:
            session.wake.clear()
            if session.closed:
                return None
            cur = self.current
            if cur is not None and cur.version != session.last_sent:
                return cur
            await session.wake.wait()

    # --- sessions --------------------------------------------------------------------------

    def open(
        self, router_id: str, address: str, applied_version: int, instance_id: str = ""
    ) -> Session:
        """Register a new session. An older session of the same router is closed (superseded)
        when it is the same instance or has been silent for ``takeover_s``; otherwise
        :class:`IdInUse`. :class:`HubFull` when ``max_routers`` routers are connected."""
        if self._shut:
            raise RuntimeError("the hub is shut down")
        now = self._clock()
        self._expire(now)
        old = self._sessions.get(router_id)
        if old is not None:
            same = bool(instance_id) and instance_id == old.record.instance_id
            if not same and now - old.record.last_seen < self.takeover_s:
                raise IdInUse(f"router id {router_id!r} is held by a live session")
            old.superseded = True
            self._end(old)
        rec = self._records.get(router_id)
        if rec is None:
            self._make_room(now)
            rec = self._records[router_id] = RouterRecord(router_id)
        rec.address = address or rec.address
        rec.instance_id = instance_id
        rec.connected = True
        rec.connected_since = now
        rec.last_seen = now
        rec.disconnected_at = 0.0
        rec.applied_version = applied_version
        rec.sessions += 1
        # Issue 4: a full snapshot on connect, whatever the router has (a router that already has
        # it ACKs at once and knows it is in sync); after that only on change.
        session = Session(rec, last_sent=-1)
        self._sessions[router_id] = session
        self._notify()
        return session

    def close(self, session: Session) -> None:
        """The session's stream ended; the router is disconnected unless a newer session of it
        is open."""
        self._end(session)
        if self._sessions.get(session.record.router_id) is session:
            del self._sessions[session.record.router_id]
            session.record.connected = False
            session.record.disconnected_at = self._clock()
        self._notify()

    def _make_room(self, now: float) -> None:
        """Room for one more record: the longest-disconnected one goes early if need be."""
        if len(self._records) < self.max_routers:
            return
        gone = [r for r in self._records.values() if not r.connected]
        if not gone:
            raise HubFull(f"{self.max_routers} routers are connected, the most this hub keeps")
        self._drop(min(gone, key=lambda r: r.disconnected_at))

    def _expire(self, now: float) -> None:
        horizon = now - self.expiry_s
        for rec in [
            r for r in self._records.values() if not r.connected and r.disconnected_at < horizon
        ]:
            self._drop(rec)

    def _drop(self, rec: RouterRecord) -> None:
        del self._records[rec.router_id]
        if self.on_expire is not None:
            self.on_expire(replace(rec))
        self._notify()

    def _end(self, session: Session) -> None:
        session.closed = True
        session.wake.set()

    def shutdown(self) -> None:
        """Close every session (their streams end); used on stop."""
        self._shut = True
        for s in list(self._sessions.values()):
            self._end(s)

    def sent(self, session: Session, version: int) -> None:
        session.last_sent = version
        session.record.last_sent_version = version
        self._notify()

    def seen(self, session: Session) -> None:
        """The router sent something (called after the message was handled)."""
        session.record.last_seen = self._clock()
        self._notify()

    def ack(self, session: Session, version: int) -> None:
        session.record.applied_version = version
        self._notify()

    def nack(self, session: Session, version: int, reason: str) -> None:
        session.record.last_nack_version = version
        session.record.last_nack_reason = reason
        self._notify()

    # --- views -----------------------------------------------------------------------------

    def routers(self) -> list[RouterRecord]:
        """Copies of every router connected, or disconnected for less than ``expiry_s``, by id."""
        self._expire(self._clock())
        return [replace(r) for _, r in sorted(self._records.items())]

    def router(self, router_id: str) -> RouterRecord | None:
        self._expire(self._clock())
        rec = self._records.get(router_id)
        return replace(rec) if rec else None

    @property
    def shutting_down(self) -> bool:
        return self._shut

    @property
    def connected(self) -> int:
        return len(self._sessions)

    def synced(self, version: int | None = None) -> list[str]:
        """Ids of connected routers that ACKed ``version`` (default: the current one)."""
        if version is None:
            version = self.current.version if self.current else 0
        return [rid for rid, s in self._sessions.items() if s.record.applied_version == version]

    def _notify(self) -> None:
        self._changed.notify()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked on every bookkeeping change
        (publish, connect, disconnect, send, ACK, NACK). Bound it with ``asyncio.timeout``."""
        await self._changed.wait_for(predicate)
