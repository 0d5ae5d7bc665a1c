"""Placement inside an engine pool: prefix-cache hit rate, TTFT and load balance of round-robin,
least-loaded and this router's placement (episode affinity, consistent hashing with bounded
load), side by side in one run, against 4 vLLM simulator replicas.

    .venv/bin/python -m bench.pool_placement                       # about 3 minutes
    .venv/bin/python -m bench.pool_placement --queries 32 --json .run/pool.json

The load is memOS-like: each query (one routing key, as memOS sends its query id) makes 6-10
calls in turn, every call carrying the same long system prompt, the query's own context and the
steps so far (the prompt grows by one step per call), ``--concurrency`` queries at a time.
The simulators run the ``titan-vllm`` timing profile: prefill costs ``prompt_token_ms`` per
*uncached* prompt token, and each replica keeps its own prefix cache (``llmsim._prefix_cache``,
vLLM's block hashing), so a call whose prefix sits on another replica pays its prefill again.

Every strategy runs on freshly reset simulators with the same seeded load. ``single`` sends
everything to one replica (a pool of one): the hit-rate ceiling the goal is measured against.
Hit rates come from the simulators' own ``vllm:prefix_cache_queries/hits`` counters; TTFT is
what the client measures through the router; load is each replica's share of the requests and
its time-averaged in-flight count (sampled every 10 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
import httpx

from bench._procs import Procs
from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from llmcore.engine_signals import parse_vllm_metrics
from router_service.app import start_router
from router_service.pools import EnginePool
from router_service.settings import RouterSettings

STRATEGIES = ("single", "round_robin", "least_loaded", "affinity")
# The router's pool_placement per strategy ("single": a pool of one, placement moot).
PLACEMENT: dict[str, Literal["affinity", "least_loaded", "round_robin"]] = {
    "single": "affinity",
    "round_robin": "round_robin",
    "least_loaded": "least_loaded",
    "affinity": "affinity",
}
GOALS = {"hit_rate_gap_points": 5.0, "max_over_mean_load": 1.25}

_WORDS = (
    "memory",
    "retrieval",
    "episode",
    "context",
    "planner",
    "summary",
    "evidence",
    "policy",
    "agent",
    "answer",
    "question",
    "source",
    "ranking",
    "entity",
    "relation",
    "timeline",
    "document",
    "chunk",
    "vector",
    "score",
    "recall",
    "update",
)


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


@dataclass
class Query:
    key: str
    context: str
    steps: list[str]


def make_load(n_queries: int, seed: int, system_words: int) -> tuple[str, list[Query]]:
    rng = random.Random(seed)
    system = "You are memOS, a memory operating system. " + _text(rng, system_words)
    queries = [
        Query(
            f"query-{i:04d}",
            _text(rng, 300),
            [_text(rng, 60) for _ in range(rng.randint(6, 10))],
        )
        for i in range(n_queries)
    ]
    return system, queries


@dataclass
class Run:
    strategy: str
    ttft_ms: list[float] = field(default_factory=list)
    errors: int = 0
    wall_s: float = 0.0
    in_flight_samples: dict[str, list[int]] = field(default_factory=dict)


async def _call(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
    system: str,
    q: Query,
    step: int,
    max_tokens: int,
    run: Run,
) -> None:
    history = "\n".join(f"Step {i}: {s}" for i, s in enumerate(q.steps[:step]))
    req = router_pb2.GenerateRequest(
        routing_key=q.key,
        provider=common_pb2.PROVIDER_VLLM,
        messages=[
            router_pb2.Message(role=router_pb2.ROLE_SYSTEM, content=system),
            router_pb2.Message(
                role=router_pb2.ROLE_USER,
                content=f"Context: {q.context}\n{history}\nNext: {q.steps[step]}",
            ),
        ],
        options=router_pb2.GenerationOptions(max_tokens=max_tokens),
    )
    t0 = time.perf_counter()
    first: float | None = None
    try:
        async for msg in stub.Generate(req, timeout=120):
            if first is None and msg.HasField("delta"):
                first = time.perf_counter()
    except grpc.aio.AioRpcError:
        run.errors += 1
        return
    if first is not None:
        run.ttft_ms.append((first - t0) * 1000)


async def _episode(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
    system: str,
    q: Query,
    max_tokens: int,
    run: Run,
) -> None:
    for step in range(len(q.steps)):  # an agent's calls follow one another
        await _call(stub, system, q, step, max_tokens, run)


async def _sample(pool: EnginePool, run: Run, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for rid, r in pool.replicas.items():
            run.in_flight_samples.setdefault(rid, []).append(r.in_flight)
        await asyncio.sleep(0.01)


async def _counters(http: httpx.AsyncClient, urls: list[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for url in urls:
        s = parse_vllm_metrics((await http.get(url + "/metrics")).text)
        out[url] = (s.prefix_queries, s.prefix_hits)
    return out


async def run_strategy(
    strategy: str,
    urls: list[str],
    system: str,
    queries: list[Query],
    args: argparse.Namespace,
) -> dict[str, Any]:
    used = urls[:1] if strategy == "single" else urls
    async with httpx.AsyncClient(timeout=10) as http:
        for url in urls:
            (await http.post(url + "/sim/reset")).raise_for_status()
        before = await _counters(http, used)
        app = await start_router(
            RouterSettings(
                host="127.0.0.1",
                port=0,
                vllm_base_urls=",".join(used),
                ollama_base_url="http://127.0.0.1:9",
                primary_provider="vllm",
                fallback_provider=None,
                pool_placement=PLACEMENT[strategy],
                engine_probe_interval_s=60.0,
                replica_scrape_interval_s=0.5,
                metrics_port=None,
                vllm_first_token_timeout_s=60.0,
            )
        )
        run = Run(strategy)
        stop = asyncio.Event()
        pool = app.providers["vllm"]
        assert isinstance(pool, EnginePool)
        sampler = asyncio.create_task(_sample(pool, run, stop))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
        stub = router_pb2_grpc.RouterServiceStub(channel)
        sem = asyncio.Semaphore(args.concurrency)

        async def bounded(q: Query) -> None:
            async with sem:
                await _episode(stub, system, q, args.max_tokens, run)

        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(bounded(q) for q in queries))
        finally:
            run.wall_s = time.perf_counter() - t0
            stop.set()
            await sampler
            attempts = {rid: r.stats.attempts for rid, r in pool.replicas.items()}
            reasons = pool.reason_counts()
            await channel.close()
            await app.stop(0)
        after = await _counters(http, used)
    queried = sum(after[u][0] - before[u][0] for u in used)
    hit = sum(after[u][1] - before[u][1] for u in used)
    share = [attempts.get(u, 0) for u in used]
    mean_share = statistics.fmean(share)
    occupancy = [statistics.fmean(run.in_flight_samples.get(u, [0])) for u in used]
    mean_occ = statistics.fmean(occupancy)
    ttft = sorted(run.ttft_ms)
    return {
        "strategy": strategy,
        "replicas": len(used),
        "requests": len(run.ttft_ms) + run.errors,
        "errors": run.errors,
        "hit_rate": hit / queried if queried else 0.0,
        "ttft_p50_ms": statistics.median(ttft) if ttft else None,
        "ttft_p95_ms": ttft[int(0.95 * (len(ttft) - 1))] if ttft else None,
        "requests_per_replica": share,
        "max_over_mean_requests": max(share) / mean_share if mean_share else None,
        "mean_in_flight_per_replica": [round(o, 2) for o in occupancy],
        "max_over_mean_in_flight": max(occupancy) / mean_occ if mean_occ else None,
        "placements": reasons,
        "wall_s": round(run.wall_s, 1),
    }


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'strategy':<13} {'hit rate':>8} {'TTFT p50':>9} {'TTFT p95':>9} "
        f"{'max/mean req':>12} {'max/mean in-flight':>18} {'errors':>6}  requests per replica"
    ]
    for r in rows:
        lines.append(
            f"{r['strategy']:<13} {r['hit_rate'] * 100:>7.1f}% "
            f"{_fmt(r['ttft_p50_ms'], '.0f'):>7}ms {_fmt(r['ttft_p95_ms'], '.0f'):>7}ms "
            f"{_fmt(r['max_over_mean_requests'], '.2f'):>12} "
            f"{_fmt(r['max_over_mean_in_flight'], '.2f'):>18} {r['errors']:>6}  "
            f"{r['requests_per_replica']}"
        )
    by = {r["strategy"]: r for r in rows}
    if {"single", "affinity", "round_robin"} <= by.keys():
        gap = (by["single"]["hit_rate"] - by["affinity"]["hit_rate"]) * 100
        p95_a, p95_rr = by["affinity"]["ttft_p95_ms"], by["round_robin"]["ttft_p95_ms"]
        lines.append("")
        lines.append(
            f"goal: hit rate within {GOALS['hit_rate_gap_points']:g} points of single: "
            f"{gap:.1f} points -> {'met' if gap <= GOALS['hit_rate_gap_points'] else 'NOT met'}"
        )
        if p95_a is not None and p95_rr is not None:
            lines.append(
                f"goal: TTFT p95 below round-robin's: {p95_a:.0f} vs {p95_rr:.0f} ms -> "
                f"{'met' if p95_a < p95_rr else 'NOT met'}"
            )
        ratio = by["affinity"]["max_over_mean_requests"]
        if ratio is not None:
            lines.append(
                f"goal: no replica above {GOALS['max_over_mean_load']:g}x mean load "
                f"(requests): {ratio:.2f} -> "
                f"{'met' if ratio <= GOALS['max_over_mean_load'] else 'NOT met'}"
            )
    return lines


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=16, help="queries in flight at once")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--system-words", type=int, default=1500, help="shared system prompt size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--profile", default="titan-vllm")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    system, queries = make_load(args.queries, args.seed, args.system_words)
    rows: list[dict[str, Any]] = []
    with Procs() as procs:
        sims = [
            procs.simulator("vllm", None, ["--profile", args.profile, "--seed", str(i)])
            for i in range(args.replicas)
        ]
        urls = [s.address for s in sims]
        for strategy in args.strategies.split(","):
            rows.append(await run_strategy(strategy, urls, system, queries, args))
            print(report(rows)[len(rows)], file=sys.stderr)  # this strategy's row
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows = asyncio.run(amain(args))
    for line in report(rows):
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
