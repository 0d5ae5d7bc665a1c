"""What is etcd's own in the etcd store (the shared contract is in tests/control/store_contract):
the layout's schema version, fencing on the leadership key, every replica following the state
by watch, and one etcd member lost and restored changing nothing the store's users see."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from control_service import phases
from control_service.errors import NotLeader, StoreError
from control_service.leadership.record import LeaderRecord
from control_service.state import Snapshot, default_state, with_migration
from control_service.store import Change, Decision, Mutation
from control_service.store.etcd import SCHEMA_VERSION, EtcdStore, Fence
from control_service.store.etcd_client import Compare, EtcdClient, Put
from control_service.store.etcd_url import parse_endpoints
from llmtools.etcd_cluster import EtcdCluster


def promote(snap: Snapshot) -> Change:
    state = replace(snap.state, migration=phases.promote(snap.state.migration))
    return Change(state, "tester", "promote", "test")


def weight(w: int) -> Mutation:
    def mutate(snap: Snapshot) -> Change:
        return Change(
            with_migration(snap.state, phases.set_weight(snap.state.migration, w)), "t", "w", ""
        )

    return mutate


def test_endpoints_parse() -> None:
    assert parse_endpoints("etcd://10.0.0.1:2379,10.0.0.2") == ["10.0.0.1:2379", "10.0.0.2:2379"]
    assert parse_endpoints("etcd-0.etcd:2380") == ["etcd-0.etcd:2380"]
    with pytest.raises(ValueError, match="no etcd endpoint"):
        parse_endpoints("etcd://")


async def test_a_newer_schema_is_refused(etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    client = EtcdClient(etcd_cluster.endpoints)
    await client.txn([], [Put(f"{etcd_prefix}/schema".encode(), str(SCHEMA_VERSION + 1).encode())])
    await client.close()
    store = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    with pytest.raises(StoreError, match="schema version"):
        await store.open(default_state())
    await store.close()


async def elect(client: EtcdClient, store: EtcdStore, who: str) -> tuple[int, Fence]:
    """Take the leadership key the way the elector does (absent → put with a lease)."""
    lease = await client.grant(2)
    ok, rev, _ = await client.txn(
        [Compare(store.k_leader, "create", 0)],
        [Put(store.k_leader, LeaderRecord(who, f"{who}:50061").to_bytes(), lease)],
    )
    assert ok
    return lease, Fence(store.k_leader, rev)


async def test_a_former_leader_cannot_write(etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    """Fencing: A is elected and writes; its lease ends (a pause past the TTL), B is elected;
    A's next change and decision are refused with NotLeader naming B, and nothing of A's lands,
    although A's compare-and-set version is still right; an observation A notes is filed."""
    a = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    b = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    await a.open(default_state())
    await b.open(default_state())
    lease_a, a.fence = await elect(a.client, a, "a")
    snap, _ = await a.commit(1, promote)
    assert snap.version == 2
    await a.client.revoke(lease_a)  # what etcd does when A's keep-alives stop for a TTL
    _, b.fence = await elect(b.client, b, "b")
    with pytest.raises(NotLeader) as exc:
        await a.commit(2, weight(20))
    assert (exc.value.leader_id, exc.value.leader_address) == ("b", "b:50061")
    with pytest.raises(NotLeader):
        await a.record(Decision("rollback-controller", "alert", "stale", {}))
    # What a replica observes (a router expired) is still filed: it decides nothing.
    noted = await a.note(Decision("control-service", "router_expired", "r1 gone", {}))
    assert noted.version == 2
    assert (await b.current()).version == 2
    assert [e.action for e in await b.events(0, 10)] == ["router_expired", "promote", "init"]
    assert (await b.commit(2, promote))[0].version == 3  # the new leader writes
    await a.close()
    await b.close()


async def test_every_store_follows_the_state_by_watch(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    writer = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    follower = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    await writer.open(default_state())
    await follower.open(default_state())
    seen: list[int] = []

    async def follow() -> None:
        async for snap in follower.snapshots():
            seen.append(snap.version)
            if snap.version == 4:
                return

    task = asyncio.create_task(follow())
    await writer.commit(0, promote)
    await writer.commit(0, promote)
    await writer.commit(0, weight(20))
    async with asyncio.timeout(5):
        await task
    assert seen == [2, 3, 4]
    await writer.close()
    await follower.close()


async def test_an_etcd_member_lost_and_restored_changes_nothing_visible(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    """Each member in turn is SIGKILLed: commits, reads and a follower's watch go on (a quorum
    of two remains), and after the member is back the state is the same everywhere."""
    writer = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    follower = EtcdStore(etcd_cluster.endpoints, prefix=etcd_prefix)
    await writer.open(default_state())
    await follower.open(default_state())
    await writer.commit(0, promote)
    await writer.commit(0, promote)
    latest: list[int] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        async for snap in follower.snapshots():
            latest.append(snap.version)
            arrived.set()

    task = asyncio.create_task(follow())
    try:
        for i in range(len(etcd_cluster.members)):
            etcd_cluster.kill(i)
            try:
                snap, changed = await writer.commit(0, weight(20 + i))
                assert changed
                assert (await follower.current()).version == snap.version
                async with asyncio.timeout(10):
                    while not latest or latest[-1] != snap.version:
                        arrived.clear()
                        await arrived.wait()
            finally:
                await asyncio.to_thread(etcd_cluster.restart, i)
        assert latest == sorted(set(latest))  # in order, none twice
        events = await follower.events(0, 100)
        assert [e.version for e in events] == list(range(snap.version, 0, -1))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await writer.close()
        await follower.close()
