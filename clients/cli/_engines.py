"""``llmctl engines [list | drain REPLICA | undrain REPLICA]``: the engine pools' replicas.

``list`` (the default) shows every replica the control service knows (its own settings,
``flags.replicas`` and what routers reported), as it probed them now: health, load (running +
waiting as the engine reports it), KV-cache usage, prefix-cache hit rate, and the routers'
evidence (attempts, failures, open breakers). ``drain`` stops every router sending new requests
to one replica (requests in flight finish); ``undrain`` puts it back. Both are audited.
"""

from __future__ import annotations

import argparse
from typing import Any

from clients.cli._common import Subparsers
from clients.cli._control_common import UsageError, add_parser, change_kwargs, run_control
from clients.cli._output import emit, format_table
from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from clients.llm import ControlClient

_ENGINE = {common_pb2.PROVIDER_OLLAMA: "ollama", common_pb2.PROVIDER_VLLM: "vllm"}


def register(subparsers: Subparsers) -> None:
    p = add_parser(
        subparsers,
        "engines",
        help="list engine-pool replicas; drain or undrain one",
        description="engines [list]: every replica with health, load, KV-cache use and "
        "prefix-cache hit rate. engines drain REPLICA: no router sends it new requests, "
        "requests in flight finish. engines undrain REPLICA: back into placement. REPLICA is "
        "the base URL as listed.",
        mutating=True,
    )
    p.add_argument("verb", nargs="?", choices=["list", "drain", "undrain"], default="list")
    p.add_argument("replica", nargs="?", default="", help="replica base URL (drain, undrain)")
    p.set_defaults(handler=_handler)


def replica_dict(r: control_pb2.ReplicaStatus) -> dict[str, Any]:
    e = r.evidence
    return {
        "engine": _ENGINE.get(r.provider, "unknown"),
        "url": r.url,
        "source": r.source,
        "healthy": r.healthy,
        "detail": r.detail,
        "latency_ms": round(r.latency_ms, 1),
        "draining": r.draining,
        "running": r.running,
        "waiting": r.waiting,
        "kv_cache_usage": r.kv_cache_usage,
        "prefix_cache_hit_rate": (
            r.prefix_cache_hit_rate if r.HasField("prefix_cache_hit_rate") else None
        ),
        "loaded_models": list(r.loaded_models),
        "evidence": {
            "attempts": e.attempts,
            "successes": e.successes,
            "failures": e.failures,
            "timeouts": e.timeouts,
            "routers": e.routers,
            "open_breakers": e.open_breakers,
            "in_flight": e.in_flight,
        },
    }


def _row(d: dict[str, Any]) -> list[str]:
    state = "draining" if d["draining"] else ("up" if d["healthy"] else "DOWN")
    rate = d["prefix_cache_hit_rate"]
    ev = d["evidence"]
    return [
        d["engine"],
        d["url"],
        state,
        f"{d['running']}+{d['waiting']}",
        f"{d['kv_cache_usage'] * 100:.0f}%",
        "-" if rate is None else f"{rate * 100:.1f}%",
        f"{ev['attempts']}/{ev['failures']}/{ev['open_breakers']}",
        d["source"],
        d["detail"] or ", ".join(d["loaded_models"]),
    ]


def _handler(args: argparse.Namespace) -> int:
    async def body(client: ControlClient) -> int:
        if args.verb == "list" and args.replica:
            raise UsageError("engines list takes no REPLICA")
        if args.verb != "list" and not args.replica:
            raise UsageError(f"engines {args.verb} needs REPLICA (a base URL from engines list)")
        if args.verb == "list":
            resp = await client.list_engines()
            docs = [replica_dict(r) for r in resp.replicas]
            lines = format_table(
                [
                    "ENGINE",
                    "REPLICA",
                    "STATE",
                    "RUN+WAIT",
                    "KV",
                    "HIT RATE",
                    "ATT/FAIL/OPEN",
                    "SOURCE",
                    "DETAIL",
                ],
                [_row(d) for d in docs],
            )
            emit(args, {"replicas": docs}, lines if docs else ["no replicas known"])
            return 0
        undrain = args.verb == "undrain"
        snap = await client.drain_replica(args.replica, undrain=undrain, **change_kwargs(args))
        drained = list(snap.flags.drained_replicas)
        emit(
            args,
            {
                "action": args.verb,
                "replica": args.replica,
                "version": snap.version,
                "drained_replicas": drained,
            },
            [
                f"{args.verb}: ok, config version {snap.version}",
                f"drained replicas: {', '.join(drained) or 'none'}",
            ],
        )
        return 0

    return run_control(args, body)
