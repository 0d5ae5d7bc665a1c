"""Wiring of the HA parts into one control-service process (used by ``app.start_control`` when
the store is etcd): the stats relay first (the servicer's sessions write to it), then, once the
server's port is known, the elector (its record carries the address clients dial) and the
replica that runs them."""

from __future__ import annotations

import os
import socket

from prometheus_client import CollectorRegistry

from control_service.controller import Controller
from control_service.health import ComponentHealth
from control_service.leadership.elector import Elector
from control_service.leadership.metrics import LeadershipCollector
from control_service.leadership.record import LeaderRecord
from control_service.leadership.replica import Replica
from control_service.leadership.stats_relay import Ingest, StatsRelay
from control_service.rollback.loop import RollbackLoop
from control_service.settings import ControlSettings
from control_service.store.etcd import EtcdStore


def advertise_address(settings: ControlSettings, port: int) -> str:
    if settings.advertise_address:
        return settings.advertise_address
    host = settings.host
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


class HaParts:
    def __init__(self, store: EtcdStore, settings: ControlSettings, ingest: Ingest) -> None:
        self.store = store
        self.settings = settings
        self.replica_id = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.relay = StatsRelay(
            store.client, store.k_stats, self.replica_id, ingest, settings.stats_retention_s
        )
        self.replica: Replica | None = None

    def start(
        self,
        controller: Controller,
        rollback: RollbackLoop | None,
        port: int,
        registry: CollectorRegistry,
    ) -> Replica:
        me = LeaderRecord(self.replica_id, advertise_address(self.settings, port))
        elector = Elector(
            self.store.client, self.store.k_leader, me, self.settings.leader_lease_ttl_s
        )
        self.replica = Replica(self.store, controller, elector, rollback, self.relay)
        registry.register(LeadershipCollector(self.replica))
        self.replica.start()
        return self.replica

    def components(self) -> list[ComponentHealth]:
        return [self.replica.component()] if self.replica is not None else []
