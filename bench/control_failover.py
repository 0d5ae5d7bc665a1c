"""HA control plane: failover time and config propagation over three replicas.

Starts a real three-member etcd cluster on loopback (Debian's ``etcd``), three ``llm-control``
processes on it (``--store etcd://...``, a ``--ttl`` second lease) and ``--routers`` real
router-side config subscribers in this process, spread round-robin over the three replicas
(each on its own channel and TCP connection, through the real apply path as in
bench/control_propagation.py, whose pieces this reuses). Then:

* propagation: ``--changes`` SetWeight calls through a client listing every replica (each lands
  on the leader); per change, from the RPC returning until every router, on whichever replica,
  applied the new version;
* failover, ``--rounds`` times: SIGKILL the leader; measure until a survivor's
  ``leader_elected`` audit event (the new leader's first decision, its time as the new leader
  recorded it), until a SetWeight through the replica list is acknowledged (first change
  accepted), and until every router whose session was on the dead leader is SYNCED again on
  another replica with that change applied (router resynced). The killed replica is started
  again before the next round.

    .venv/bin/python bench/control_failover.py                     # 100 routers, ttl 2 s
    .venv/bin/python bench/control_failover.py --routers 30 --rounds 3 --json out.json

Loopback only, bounded by ``--max-seconds``; every process and the temp dir go on exit. Goals:
a new leader decides within the lease TTL plus 1 s; propagation p99 <= 100 ms (as for one
replica, bench/control_propagation.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.control_propagation import (
    GOAL_P99_MS,
    Router,
    Tracker,
    machine_facts,
    stop_routers,
    summary,
)
from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc
from clients.llm import ControlClient
from llmtools.control_replicas import ControlReplicas
from llmtools.etcd_cluster import EtcdCluster
from router_service.catalog import (
    DEFAULT_ENGINE_NAMES,
    DEFAULT_FALLBACKS,
    DEFAULT_TASK_MODELS,
    Catalog,
)
from router_service.config import ConfigHolder, bootstrap_config
from router_service.config.subscriber import (
    SESSION_CHANNEL_OPTIONS,
    ConfigSubscriber,
    SubscriberOptions,
    SubscriberState,
)
from router_service.request_stats import RequestStatsRecorder


def start_spread(
    addresses: Sequence[str], count: int, workdir: Path, tracker: Tracker
) -> tuple[list[Router], list[list[str]]]:
    """``count`` subscribers, subscriber i listing the replicas from replica i % 3 on, so the
    sessions spread evenly and a lost replica's routers move to the next one."""
    catalog = Catalog(DEFAULT_ENGINE_NAMES, DEFAULT_TASK_MODELS, DEFAULT_FALLBACKS)
    routers: list[Router] = []
    orders: list[list[str]] = []
    n = len(addresses)
    for i in range(count):
        order = [addresses[(i + k) % n] for k in range(n)]
        orders.append(order)
        channels = [
            grpc.aio.insecure_channel(
                a, options=[*SESSION_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
            )
            for a in order
        ]
        holder = ConfigHolder(bootstrap_config(catalog))
        router_id = f"bench-r{i:03d}"
        subscriber = ConfigSubscriber(
            channels,
            holder,
            RequestStatsRecorder(),
            SubscriberOptions(
                router_id=router_id,
                address=f"127.0.0.1:{60000 + i}",
                persist_path=workdir / "routers" / router_id / "config.snapshot",
                report_interval_s=3600.0,
                backoff_initial_s=0.05,
            ),
            on_change=tracker.callback(i, holder),
        )
        subscriber.start()
        routers.append(Router(channels[0], holder, subscriber))
    return routers, orders


def on_replica(routers: list[Router], orders: list[list[str]], address: str) -> list[Router]:
    """The routers whose session is on ``address`` now (after any earlier failover)."""
    return [
        r
        for r, order in zip(routers, orders, strict=True)
        if order[r.subscriber.replica] == address
    ]


async def leader_index(reps: ControlReplicas, among: Sequence[int]) -> int:
    while True:
        for i in among:
            async with grpc.aio.insecure_channel(reps.addresses[i]) as ch:
                stub = control_pb2_grpc.ControlServiceStub(ch)
                try:
                    h = await stub.GetHealth(control_pb2.GetHealthRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    continue
            if any(c.name == "control/leadership" and c.detail.startswith("leader ")
                   for c in h.components):  # fmt: skip
                return i
        await asyncio.sleep(0.01)


async def latest_election(client: ControlClient) -> tuple[str, float]:
    events = (await client.list_events(page_size=50)).events
    for e in events:
        if e.action == "leader_elected":
            evidence = json.loads(e.after_json)["evidence"]
            return str(evidence["replica_id"]), e.time.seconds + e.time.nanos / 1e9
    return "", 0.0


async def propagation(client: ControlClient, tracker: Tracker, changes: int) -> list[float]:
    out = []
    for k in range(changes):
        weight = (30, 70)[k % 2]
        snap = await client.set_weight(weight, actor="bench", reason=f"propagation {k}")
        returned = time.perf_counter()
        async with asyncio.timeout(10):
            applied = await tracker.wait_all(snap.version)
        out.append(max(0.0, applied - returned) * 1000)
    return out


async def failover_round(
    reps: ControlReplicas,
    client: ControlClient,
    routers: tuple[list[Router], list[list[str]]],
    tracker: Tracker,
    k: int,
) -> dict[str, float]:
    leader = await leader_index(reps, range(reps.size))
    dead = reps.addresses[leader]
    moved = on_replica(*routers, dead)
    killed_at = reps.kill(leader)
    t_kill = time.perf_counter()
    survivors = [i for i in range(reps.size) if i != leader]
    new = await leader_index(reps, survivors)
    detected = time.perf_counter() - t_kill
    snap = await client.set_weight((40, 60)[k % 2], actor="bench", reason=f"failover {k}")
    accepted = time.perf_counter() - t_kill
    await tracker.wait_all(snap.version)
    synced = time.perf_counter() - t_kill
    assert all(r.subscriber.state is SubscriberState.SYNCED for r in moved)
    async with ControlClient(reps.addresses[new], timeout=3) as c:
        who, elected_at = await latest_election(c)
    assert who == f"c{new}", (who, new)
    await asyncio.to_thread(reps.restart, leader)  # three again (a follower now), same port
    print(
        f"round {k + 1}: killed {dead}; c{new} elected {elected_at - killed_at:.3f}s later "
        f"(seen {detected:.3f}s), first change {accepted:.3f}s, "
        f"{len(moved)} moved routers resynced {synced:.3f}s",
        flush=True,
    )
    return {
        "elected_s": elected_at - killed_at,
        "seen_s": detected,
        "first_change_s": accepted,
        "routers_resynced_s": synced,
        "routers_moved": float(len(moved)),
    }


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with EtcdCluster(workdir / "etcd") as cluster:
        env = {
            "LLM_CONTROL_ROLLBACK_ENABLED": "false",
            "LLM_CONTROL_VLLM_METRICS_INTERVAL_S": "0",
        }
        with ControlReplicas(cluster.url, "/bench", workdir, lease_ttl_s=args.ttl, env=env) as reps:
            tracker = Tracker(args.routers)
            spread = start_spread(reps.addresses, args.routers, workdir, tracker)
            routers = spread[0]
            try:
                async with ControlClient(reps.target, timeout=5) as client:
                    first = (await client.get_state()).snapshot.version
                    async with asyncio.timeout(30):
                        await tracker.wait_all(first)
                    await client.promote(actor="bench", reason="shadow")
                    snap = await client.promote(actor="bench", reason="split")
                    await tracker.wait_all(snap.version)
                    prop = await propagation(client, tracker, args.changes)
                    rounds = [
                        await failover_round(reps, client, spread, tracker, k)
                        for k in range(args.rounds)
                    ]
            finally:
                await stop_routers(routers)
    return {"propagation_ms": prop, "rounds": rounds}


def report(
    results: dict[str, Any], args: argparse.Namespace, facts: dict[str, Any]
) -> dict[str, Any]:
    prop = summary(results["propagation_ms"])
    rounds = results["rounds"]
    keys = ("elected_s", "seen_s", "first_change_s", "routers_resynced_s")
    worst = {k: max(r[k] for r in rounds) for k in keys}
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    elected_ok = worst["elected_s"] <= args.ttl + 1
    prop_ok = prop["p99"] <= GOAL_P99_MS
    print()
    print(f"command: {command}")
    print(
        "machine: {cpu_count} CPUs ({cpus_usable} usable), {cpu_model}; Python {python}, "
        "grpcio {grpcio}, protobuf {protobuf}".format(**facts)
    )
    print(
        f"propagation to {args.routers} routers over 3 replicas, {len(results['propagation_ms'])}"
        f" changes: p50 {prop['p50']:.1f} p95 {prop['p95']:.1f} p99 {prop['p99']:.1f} "
        f"max {prop['max']:.1f} ms: {'PASS' if prop_ok else 'FAIL'} (goal p99 <= {GOAL_P99_MS:g})"
    )
    print(
        f"failover over {len(rounds)} rounds (lease {args.ttl}s), worst: new leader elected "
        f"{worst['elected_s']:.3f}s, first change {worst['first_change_s']:.3f}s, routers "
        f"resynced {worst['routers_resynced_s']:.3f}s: {'PASS' if elected_ok else 'FAIL'} "
        f"(goal elected <= ttl + 1 s)"
    )
    return {
        "command": command,
        "machine": facts,
        "routers": args.routers,
        "ttl_s": args.ttl,
        "propagation_ms": prop,
        "failover_rounds": rounds,
        "failover_worst_s": worst,
        "verdict": "PASS" if elected_ok and prop_ok else "FAIL",
    }


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--routers", type=int, default=100)
    p.add_argument("--changes", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--ttl", type=int, default=2, help="leader lease seconds (etcd minimum 2)")
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not 1 <= args.routers <= 1000 or not 1 <= args.rounds <= 50 or args.ttl < 2:
        p.error("--routers in [1, 1000], --rounds in [1, 50], --ttl >= 2")
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llm-failover-") as tmp:
        workdir = Path(tmp)
        facts = machine_facts(workdir, "asyncio")
        async with asyncio.timeout(args.max_seconds):
            results = await measure(args, workdir)
    return report(results, args, facts)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    results = asyncio.run(amain(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
