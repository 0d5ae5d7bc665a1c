"""The store the settings name: SQLite (the embedded default) or etcd (``etcd://h:p,...``)."""

from __future__ import annotations

from control_service.settings import ControlSettings
from control_service.store._base import StateStore
from control_service.store.etcd import EtcdStore
from control_service.store.sqlite import SqliteStore


def open_store(settings: ControlSettings) -> StateStore:
    if settings.etcd_endpoints:
        return EtcdStore(settings.etcd_endpoints, prefix=settings.etcd_prefix)
    return SqliteStore(
        settings.db_path, retention=settings.retention(), max_bytes=settings.store_max_bytes
    )
