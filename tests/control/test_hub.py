"""The hub and the controller with plain asyncio: fan-out, coalescing, bookkeeping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control_service import phases
from control_service.controller import Controller
from control_service.hub import Hub, RouterRecord, RouterView
from control_service.state import ChangeMeta, Snapshot, default_state
from control_service.store import SqliteStore


def rec(hub: Hub, router_id: str) -> RouterRecord:
    found = hub.router(router_id)
    assert found is not None
    return found


async def test_publish_wakes_sessions_and_ignores_older_versions() -> None:
    hub = Hub()
    assert hub.publish(2, b"v2")
    assert not hub.publish(1, b"v1")
    s = hub.open("r1", "addr", applied_version=0)
    assert await hub.next_to_send(s) == hub.current
    hub.sent(s, 2)
    waiter = asyncio.create_task(hub.next_to_send(s))
    await asyncio.sleep(0)  # let it block (an ordering step, not a wait for time)
    assert not waiter.done()
    hub.publish(3, b"v3")
    hub.publish(4, b"v4")  # a slow session skips 3: snapshots are complete
    pub = await waiter
    assert pub is not None
    assert (pub.version, pub.payload) == (4, b"v4")


async def test_a_session_gets_the_snapshot_on_connect_then_only_changes() -> None:
    hub = Hub()
    hub.publish(5, b"v5")
    s = hub.open("r1", "", applied_version=5)
    first = await hub.next_to_send(s)  # on connect: always, even when the router has it
    assert first is not None
    assert first.version == 5
    hub.sent(s, 5)
    waiter = asyncio.create_task(hub.next_to_send(s))
    await asyncio.sleep(0)
    assert not waiter.done()  # unchanged: nothing more
    hub.close(s)
    assert await waiter is None


async def test_bookkeeping_and_views() -> None:
    hub = Hub()
    hub.publish(3, b"")
    s = hub.open("r1", "h:1", applied_version=2, instance_id="i1")
    assert rec(hub, "r1").view(3) is RouterView.BEHIND
    hub.nack(s, 3, "bad")
    assert rec(hub, "r1").view(3) is RouterView.REFUSED
    hub.ack(s, 3)
    assert hub.synced() == ["r1"]
    again = hub.open("r1", "", applied_version=3, instance_id="i1")  # reconnect: supersedes s
    assert s.closed
    assert s.superseded
    hub.close(s)  # the old stream's cleanup must not disconnect the new session
    assert rec(hub, "r1").connected
    hub.close(again)
    r1 = rec(hub, "r1")
    assert (r1.connected, r1.address, r1.sessions) == (False, "h:1", 2)
    assert r1.view(3) is RouterView.DISCONNECTED


async def test_shutdown_ends_sessions_and_refuses_new_ones() -> None:
    hub = Hub()
    hub.publish(1, b"")
    s = hub.open("r1", "", applied_version=1)
    hub.shutdown()
    assert await hub.next_to_send(s) is None
    assert hub.shutting_down
    with pytest.raises(RuntimeError, match="shut down"):
        hub.open("r2", "", 0)


async def test_the_snapshot_is_encoded_once_per_version(tmp_path: Path) -> None:
    encoded: list[int] = []

    def encode(snap: Snapshot) -> bytes:
        encoded.append(snap.version)
        return str(snap.version).encode()

    hub = Hub()
    sessions = [hub.open(f"r{i}", "", 0) for i in range(10)]
    controller = Controller(SqliteStore(tmp_path / "c.db"), hub, encode)
    await controller.start(default_state())
    await controller.migrate(phases.Promote(), ChangeMeta())
    await controller.migrate(phases.SetWeight(10), ChangeMeta())
    await controller.migrate(phases.SetWeight(10), ChangeMeta())  # no change
    assert encoded == [1, 2, 3]
    for s in sessions:
        pub = await hub.next_to_send(s)
        assert pub is not None
        assert pub.payload == b"3"
    await controller.store.close()
