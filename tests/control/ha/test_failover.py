"""Three real ``llm-control`` processes on the session's three-member etcd cluster, a 2 s lease:
the leader killed (-9) during a burst of compare-and-set changes from two operators, the leader
paused (SIGSTOP) past its lease and resumed, and routers on every replica throughout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc
from clients.llm import ControlClient, RouterError
from llmtools.control_replicas import ControlReplicas
from llmtools.etcd_cluster import EtcdCluster
from tests.control.conftest import error_info
from tests.control.ha.support import (
    Engines,
    after,
    all_events,
    converged,
    eventually,
    leadership,
    routers,
    serve_once,
    wait_leader,
)

pytestmark = pytest.mark.timeout(120)

TTL_S = 2
FAST_LOOP = {"LLM_CONTROL_EVALUATION_INTERVAL_S": "0.2", "LLM_CONTROL_PROBE_TIMEOUT_S": "0.3"}


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    e = await Engines().start()
    yield e
    await e.stop()


def llmctl() -> str:
    return str(Path(sys.executable).with_name("llmctl"))


def _replicas(
    cluster: EtcdCluster, prefix: str, tmp_path: Path, engines: Engines, ttl_s: int = TTL_S
) -> ControlReplicas:
    """Three replicas, a 2 s lease, the rollback loop every 200 ms, probing ``engines``."""
    env = {**engines.env(), **FAST_LOOP}
    return ControlReplicas(cluster.url, prefix, tmp_path, lease_ttl_s=ttl_s, env=env)


async def _to_split(client: ControlClient) -> control_pb2.ConfigSnapshot:
    await client.promote(actor="setup", reason="shadow")
    return await client.promote(actor="setup", reason="split")


async def test_kill_9_of_the_leader_loses_no_acknowledged_change(
    etcd_cluster: EtcdCluster, etcd_prefix: str, tmp_path: Path, engines: Engines
) -> None:
    with _replicas(etcd_cluster, etcd_prefix, tmp_path, engines) as reps:
        leader = await wait_leader(reps, list(range(reps.size)))
        async with ControlClient(reps.target, timeout=3) as setup:
            await _to_split(setup)
        async with routers(reps, 3, tmp_path) as rs:
            acked: dict[str, list[tuple[int, int]]] = {"alice": [], "bob": []}
            refused: dict[str, int] = {"alice": 0, "bob": 0}
            stop = asyncio.Event()

            async def operator(name: str) -> None:
                async with ControlClient(reps.target, timeout=3) as c:
                    n = 0
                    while not stop.is_set():
                        try:
                            snap = (await c.get_state()).snapshot
                            weight = snap.migration.split_weight_percent % 98 + 1
                            new = await c.set_weight(
                                weight, actor=name, expected_version=snap.version
                            )
                        except RouterError:
                            refused[name] += 1  # a conflict, or the leader gone: re-read
                            await asyncio.sleep(0.01)
                            continue
                        acked[name].append((new.version, weight))
                        n += 1

            async def traffic() -> None:
                i = 0
                while not stop.is_set():
                    await asyncio.gather(*(serve_once(r, f"k{i}") for r in rs))
                    i += 1
                    await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(operator("alice")), asyncio.create_task(operator("bob"))]
            tasks.append(asyncio.create_task(traffic()))
            await asyncio.sleep(1.5)
            before_kill = sum(len(v) for v in acked.values())
            killed_at = reps.kill(leader)
            survivors = [i for i in range(reps.size) if i != leader]
            new_leader = await wait_leader(reps, survivors, timeout_s=TTL_S + 5)
            await asyncio.sleep(1.5)  # the burst goes on against the new leader
            stop.set()
            await asyncio.gather(*tasks)

            after_kill = sum(len(v) for v in acked.values()) - before_kill
            assert before_kill > 5, before_kill
            assert after_kill > 5, after_kill
            async with ControlClient(reps.addresses[new_leader], timeout=3) as c:
                events = await all_events(c)
                final = (await c.get_state()).snapshot
            by_version = {e.version: e for e in events if e.action == "set_weight"}
            for name, changes in acked.items():
                versions = [v for v, _ in changes]
                assert versions == sorted(set(versions))  # monotone for each operator
                for version, weight in changes:  # every acknowledged change is in the log
                    event = by_version[version]
                    assert event.actor == name
                    assert after(event)["migration.split_weight_percent"] == weight
            every = sorted(v for changes in acked.values() for v, _ in changes)
            assert len(every) == len(set(every))  # no version acknowledged twice

            # The new leader's first decision: its election, within the TTL plus a second.
            elected = [e for e in events if e.action == "leader_elected"]
            latest = max(elected, key=lambda e: e.version * 1e6 + e.time.seconds)
            elected_at = latest.time.seconds + latest.time.nanos / 1e9
            assert after(latest)["evidence"]["replica_id"] == f"c{new_leader}"  # type: ignore[index]
            assert 0 < elected_at - killed_at <= TTL_S + 1, elected_at - killed_at

            # Routers served every request throughout, and all resynced on the final version,
            # each applying versions in order and none twice (no flap on failover).
            await converged(rs, final.version)
            for r in rs:
                assert r.failed == 0
                assert r.served > 0
                assert r.applied == sorted(set(r.applied)), r.applied


async def test_a_paused_leader_is_fenced_and_no_rollback_is_decided_twice(
    etcd_cluster: EtcdCluster, etcd_prefix: str, tmp_path: Path, engines: Engines
) -> None:
    with _replicas(etcd_cluster, etcd_prefix, tmp_path, engines) as reps:
        old = await wait_leader(reps, list(range(reps.size)))
        async with ControlClient(reps.target, timeout=3) as c:
            flags = control_pb2.Flags()
            flags.rollback.health_failure_threshold = 2
            flags.rollback.health_success_threshold = 1
            flags.rollback.cooldown_seconds = 0
            await c.update_flags(
                flags,
                [
                    "rollback.health_failure_threshold",
                    "rollback.health_success_threshold",
                    "rollback.cooldown_seconds",
                ],
                actor="setup",
            )
            split = await _to_split(c)
        async with routers(reps, 3, tmp_path) as rs:
            await converged(rs, split.version)
            paused_at = reps.pause(old)
            others = [i for i in range(reps.size) if i != old]
            new = await wait_leader(reps, others, timeout_s=TTL_S + 5)
            assert time.time() - paused_at <= TTL_S + 2
            engines.vllm_status = 500  # vLLM fails its health check: the new leader rolls back
            async with ControlClient(reps.addresses[new], timeout=3) as c:

                async def rolled_back() -> bool:
                    m = (await c.get_state()).snapshot.migration
                    return m.status == control_pb2.ROLLOUT_STATUS_ABORTED

                await eventually(rolled_back)
                rolled = (await c.get_state()).snapshot
            reps.resume(old)  # past its lease: it must not write, nor decide again

            async def stepped_down() -> bool:
                return (await leadership(reps.addresses[old])).startswith("follower")

            await eventually(stepped_down)
            # A mutation sent to the former leader alone is refused, naming the new leader.
            async with grpc.aio.insecure_channel(reps.addresses[old]) as ch:
                stub = control_pb2_grpc.ControlServiceStub(ch)
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub.Retry(control_pb2.RetryRequest(meta=control_pb2.ChangeMeta()))
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
            info = error_info(exc.value)
            assert (info.reason, info.metadata["leader_address"]) == (
                "NOT_LEADER",
                reps.addresses[new],
            )
            await asyncio.sleep(1.0)  # several rollback intervals of the resumed process
            async with ControlClient(reps.target, timeout=3) as c:
                events = await all_events(c)
                final = (await c.get_state()).snapshot
            rollbacks = [e for e in events if e.action == "rollback"]
            assert len(rollbacks) == 1, [(e.version, e.actor) for e in rollbacks]
            assert final.version == rolled.version  # nothing written after the rollback
            await converged(rs, final.version)
            for r in rs:
                assert r.applied == sorted(set(r.applied)), r.applied


async def test_an_etcd_member_lost_and_restored_changes_nothing_visible(
    etcd_cluster: EtcdCluster, etcd_prefix: str, tmp_path: Path, engines: Engines
) -> None:
    """Each etcd member in turn is SIGKILLed and restarted while operators change the state
    with llmctl (every replica listed, a follower first): every change lands, routers on all
    three replicas apply each one, every replica stays healthy and the leader stays.

    The lease is the default 10 s here: losing etcd's own raft leader costs an etcd election
    (about two of its 1 s election timeouts, longer on a loaded machine), which a lease must
    outlast for leadership to stay (docs/ha.md).
    """
    with _replicas(etcd_cluster, etcd_prefix, tmp_path, engines, ttl_s=10) as reps:
        leader = await wait_leader(reps, list(range(reps.size)))
        term = await leadership(reps.addresses[leader])
        follower_first = ",".join(
            reps.addresses[(leader + 1) % reps.size :] + reps.addresses[: (leader + 1) % reps.size]
        )
        async with ControlClient(reps.target, timeout=3) as c:
            snap = await _to_split(c)
        async with routers(reps, 3, tmp_path) as rs:
            for i, weight in enumerate((20, 40, 60)):
                etcd_cluster.kill(i)
                try:
                    done = await asyncio.to_thread(
                        subprocess.run,
                        [llmctl(), "set-weight", str(weight), "--control", follower_first],
                        capture_output=True,
                        text=True,
                        timeout=30,
                    )
                    assert done.returncode == 0, done.stderr
                    snap = (await ControlClient(reps.target).get_state()).snapshot
                    assert snap.migration.split_weight_percent == weight
                    await converged(rs, snap.version)
                finally:
                    await asyncio.to_thread(etcd_cluster.restart, i)
            health = await asyncio.to_thread(
                subprocess.run,
                [llmctl(), "health", "--control", follower_first, "-o", "json"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert f"leader c{leader}" in health.stdout, health.stdout
            assert await leadership(reps.addresses[leader]) == term  # no leader change
            for r in rs:
                assert r.failed == 0
                assert r.applied == sorted(set(r.applied)), r.applied
