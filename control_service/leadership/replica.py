"""One control-service replica of several on one etcd store: what runs where.

Every replica: follows the state by watch (its router sessions get each version as fast as the
leader's do), serves reads and router sessions, relays stats through etcd. Only the leader:
runs the rollback loop and accepts mutations. A follower's mutation reaches the store with a
fence no write passes (``Elector.fence``) and comes back as NotLeader naming the leader, which
clients follow (UNAVAILABLE with ``leader_address`` in the ErrorInfo).

Leadership changes are serialised in one supervisor task: on election it re-reads the state (so
the rollback loop judges the newest version), files a ``leader_elected`` audit event (the new
leader's first decision, fenced like every write) and starts the rollback loop; on losing it,
the fence closes first (synchronously, in the elector's listener), then the loop stops.
"""

from __future__ import annotations

import asyncio
import logging
import time

from control_service.controller import Controller
from control_service.errors import StoreError
from control_service.health import ComponentHealth, Health
from control_service.leadership.elector import Elector, LeadershipView
from control_service.leadership.stats_relay import StatsRelay
from control_service.leadership.tasks import cancel_all
from control_service.rollback.loop import RollbackLoop
from control_service.store import Decision
from control_service.store.etcd import EtcdStore

log = logging.getLogger(__name__)

ACTOR = "control-service"


class Replica:
    def __init__(
        self,
        store: EtcdStore,
        controller: Controller,
        elector: Elector,
        rollback: RollbackLoop | None,
        relay: StatsRelay | None = None,
    ) -> None:
        self.store = store
        self.controller = controller
        self.elector = elector
        self.rollback = rollback
        self.relay = relay
        self.elected_at = 0.0  # wall time of this replica's last election
        self._tasks: list[asyncio.Task[None]] = []
        self._leading = False
        store.fence = elector.fence
        elector.listeners.append(self._on_change)
        controller.read_through = True  # another replica may have written since the watch

    @property
    def view(self) -> LeadershipView:
        return self.elector.view

    def _on_change(self, view: LeadershipView) -> None:
        # Before anything else can run: writes from now on carry the new guard.
        self.store.fence = self.elector.fence

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(), name="state-follower"),
            asyncio.create_task(self._supervise(), name="leadership"),
        ]
        if self.relay is not None:
            self.relay.start()
        self.elector.start()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self.rollback is not None:
            await self.rollback.stop()
        await self.elector.stop(resign=True)
        if self.relay is not None:
            await self.relay.stop()

    async def _follow(self) -> None:
        async for snap in self.store.snapshots():
            self.controller.observe(snap)

    async def _supervise(self) -> None:
        while True:
            view = await self.elector.wait_for(lambda v: v.is_leader != self._leading)
            if view.is_leader:
                self._leading = True
                await self._lead(view)
            else:
                self._leading = False
                if self.rollback is not None:
                    await self.rollback.stop()

    async def _lead(self, view: LeadershipView) -> None:
        self.elected_at = time.time()
        try:
            self.controller.observe(await self.store.current())
            await self.controller.record(
                Decision(
                    ACTOR,
                    "leader_elected",
                    f"replica {self.elector.me.replica_id} leads (term {view.term})",
                    {
                        "replica_id": self.elector.me.replica_id,
                        "address": self.elector.me.address,
                        "term": view.term,
                    },
                )
            )
        except StoreError as exc:  # NotLeader included: deposed already; the supervisor sees it
            log.warning("could not take office: %s", exc)
            return
        if self.rollback is not None and self.elector.view.is_leader:
            self.rollback.start()

    def component(self) -> ComponentHealth:
        """The ``leadership`` line of GetHealth (``llmctl health``)."""
        v = self.view
        me = self.elector.me
        if v.is_leader:
            return ComponentHealth(
                "control/leadership", Health.OK, f"leader {me.replica_id} (term {v.term})"
            )
        if v.leader is not None and v.leader.replica_id:
            detail = (
                f"follower {me.replica_id}; leader {v.leader.replica_id} at "
                f"{v.leader.address} (term {v.term})"
            )
            return ComponentHealth("control/leadership", Health.OK, detail)
        return ComponentHealth(
            "control/leadership", Health.DEGRADED, f"{me.replica_id}: no leader elected"
        )
