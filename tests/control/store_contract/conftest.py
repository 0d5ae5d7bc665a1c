"""One contract, two stores: every test here runs against SQLite (a file in tmp_path) and
etcd (the session's three-member cluster, under a prefix of the test's own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control_service.state import DesiredState, default_state
from control_service.store import SqliteStore, StateStore
from control_service.store.etcd import EtcdStore
from llmtools.etcd_cluster import EtcdCluster


@dataclass
class Backend:
    """Makes stores on one shared backing (one file, or one etcd prefix): a new store is what
    a restarted or second process would open."""

    kind: str
    make: Callable[[], StateStore]
    opened: list[StateStore] = field(default_factory=list)

    def new(self) -> StateStore:
        store = self.make()
        self.opened.append(store)
        return store

    async def open(self, initial: DesiredState | None = None) -> StateStore:
        store = self.new()
        await store.open(initial or default_state())
        return store


@pytest.fixture(params=["sqlite", "etcd"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, etcd_prefix: str
) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "sub" / "control.db"
        b = Backend("sqlite", lambda: SqliteStore(path))
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")
        b = Backend("etcd", lambda: EtcdStore(cluster.endpoints, prefix=etcd_prefix))
    yield b
    for store in b.opened:
        await store.close()
