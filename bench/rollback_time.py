"""Rollback time: from a fault's onset in vLLM to every router running the rolled-back config.

For each trigger (``--triggers``) and run (``--runs``) it starts, in this process, a simulated
Ollama and vLLM (``llmsim``, real HTTP on port 0), a real control service
(``start_control``: SQLite store, engine probes against the simulators, the rollback loop at
``--evaluation-interval``), and ``--routers`` real routers (``start_router``: real providers,
config subscribers reporting stats every ``--report-interval``). It moves the migration to
SPLIT 50 %, sends load through every router for ``--warmup`` seconds, injects the fault, and
records:

* **onset -> condition met**: until the rule's condition holds on the control service's data.
  For the traffic rules the bench evaluates the same pure rule on the same windows every 5 ms
  (``RollbackLoop.signals``); for ``health`` it is the probe that crossed the failure threshold.
  This part is dominated by how often routers report and how many samples the rule needs.
* **condition met -> rollback committed**: until the loop's decision is durable (the new
  version fsynced); at most one evaluation interval plus the commit.
* **condition met -> all routers applied** (the goal: under 2 s): until every router's config
  holder serves the rolled-back version (polled every 2 ms).
* **onset -> all routers applied**: the whole.

    .venv/bin/python bench/rollback_time.py                    # 4 triggers x 5 runs, 3 routers
    .venv/bin/python bench/rollback_time.py --runs 1 --triggers health --json out.json

Faults per trigger: ``error_rate``: a mid-stream error after 3 tokens; ``latency_p95``: 600 ms
added before vLLM queues a request (threshold 300 ms); ``consecutive_timeouts``: streams stall
after 2 tokens with a 0.5 s router read timeout; ``health``: vLLM's ``/health`` answers 503;
``stall``: the issue-14 case: vLLM sends its first token and stalls with ``/health`` green, clients
carry memOS's 4 s deadline and the router runs its default stream timeouts (idle 15 s, so each
call ends at the client's deadline with vLLM silent: counted as vLLM's timeout); ``stall_idle``:
the same stall with a 1 s idle timeout, which the router catches itself and continues on Ollama
(the ``user errors`` column counts what the load's users saw fail).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient, RouterClient, RouterError
from control_service.app import ControlApp, start_control
from control_service.rollback import decide as dec
from control_service.rollback import rules
from control_service.rollback.probes import HealthState
from control_service.settings import ControlSettings
from control_service.state import RolloutStatus
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings

GOAL_S = 2.0
BASE_THRESHOLDS: dict[str, Any] = {
    "error_rate": 0.05,
    "latency_p95_ms": 300,
    "embed_latency_p95_ms": 5000,
    "consecutive_timeouts": 3,
    "window_seconds": 10,
    "min_requests": 10,
    "cooldown_seconds": 0,
    "max_automatic_rollbacks": 100,
    "timeout_routers_required": 2,
    "health_failure_threshold": 3,
    "health_success_threshold": 2,
}


@dataclass(frozen=True)
class Trigger:
    rule: str
    fault: dict[str, Any]
    # Threshold changes that keep the other rules from firing first.
    thresholds: dict[str, Any] = field(default_factory=dict)
    read_timeout_s: float = 30.0
    client_timeout_s: float = 30.0
    router: dict[str, Any] = field(default_factory=dict)  # RouterSettings overrides


TRIGGERS: dict[str, Trigger] = {
    "error_rate": Trigger("error_rate", {"midstream_error_after_tokens": 3}),
    "latency_p95": Trigger("latency_p95", {"added_latency_ms": 600}),
    "consecutive_timeouts": Trigger(
        "consecutive_timeouts",
        {"stall_after_tokens": 2},
        {"error_rate": 1.0, "latency_p95_ms": 60_000},
        read_timeout_s=0.5,
    ),
    "health": Trigger("health", {"health_failing": True}),
    "stall": Trigger(
        "consecutive_timeouts",
        {"stall_after_tokens": 1},
        {"error_rate": 1.0, "latency_p95_ms": 60_000},
        client_timeout_s=4.0,
    ),
    "stall_idle": Trigger(
        "consecutive_timeouts",
        {"stall_after_tokens": 1},
        {"error_rate": 1.0, "latency_p95_ms": 60_000},
        client_timeout_s=4.0,
        router={"vllm_idle_timeout_s": 1.0},
    ),
}


@dataclass
class Sample:
    trigger: str
    onset_to_condition_s: float
    condition_to_commit_s: float
    condition_to_applied_s: float
    onset_to_applied_s: float
    rule_value: Any
    user_errors: int = 0  # calls that failed for their user from the onset to applied


@dataclass
class Stack:
    ollama: RunningSimulator
    vllm: RunningSimulator
    control: ControlApp
    http: httpx.AsyncClient
    routers: list[RouterApp]
    clients: list[RouterClient]

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for r in self.routers:
            await r.stop(0)
        await self.control.stop(0)
        await self.http.aclose()
        await self.ollama.stop()
        await self.vllm.stop()


async def start_stack(
    args: argparse.Namespace, trigger: Trigger, workdir: Path, rng: random.Random
) -> Stack:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA))
    # 10 ms between tokens, so a fault "after N tokens" reaches the router after the first one.
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, itl_ms=10))
    http = httpx.AsyncClient()
    control = await start_control(
        ControlSettings(
            host="127.0.0.1",
            port=0,
            db_path=workdir / "control.db",
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            evaluation_interval_s=args.evaluation_interval,
            stats_slot_s=1.0,
            probe_cache_s=0.0,
            grace_period_s=0.5,
            insecure=True,  # loopback only, for the measurement
        ),
        http_client=http,
    )
    # Routers report on their own timers and the loop evaluates on its own: start the routers
    # at a random point of the loop's period, so runs sample the phase between the two (a fixed
    # startup order would lock it and report one corner of the distribution every time).
    await asyncio.sleep(rng.uniform(0, args.evaluation_interval))
    routers = [
        await start_router(
            RouterSettings(
                host="127.0.0.1",
                port=0,
                ollama_base_url=ollama.base_url,
                vllm_base_url=vllm.base_url,
                control_address=f"127.0.0.1:{control.port}",
                router_id=f"r{i}",
                config_cache_path=workdir / f"r{i}.snapshot",
                stats_report_interval_s=args.report_interval,
                read_timeout_s=trigger.read_timeout_s,
                retry_base_delay_s=0.001,
                retry_max_delay_s=0.002,
                # The routers' breakers would stop vLLM traffic after a few failures; keep them
                # out of the measurement of the control plane.
                breaker_failure_threshold=100_000,
                grace_period_s=0.5,
                **trigger.router,
            )
        )
        for i in range(args.routers)
    ]
    clients = [
        RouterClient(f"127.0.0.1:{r.port}", timeout=trigger.client_timeout_s) for r in routers
    ]
    return Stack(ollama, vllm, control, http, routers, clients)


async def until(predicate: Any, within: float, poll: float) -> float:
    """Poll ``predicate`` every ``poll`` seconds; the time.time() it first held. Polling, not an
    event: the bench observes state it must not instrument, with a known resolution."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - see the docstring
            await asyncio.sleep(poll)
    return time.time()


async def load(client: RouterClient, stop: asyncio.Event, worker: int, failed: list[float]) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        started = time.time()
        try:
            await client.generate("hello", routing_key=f"w{worker}-{i}", max_tokens=8).collect()
        except RouterError:  # failures are the point; they are counted
            failed.append(started)


async def one_run(args: argparse.Namespace, name: str, workdir: Path, rng: random.Random) -> Sample:
    trigger = TRIGGERS[name]
    stack = await start_stack(args, trigger, workdir, rng)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        control = stack.control
        loop = control.rollback
        assert loop is not None
        async with ControlClient(f"127.0.0.1:{control.port}") as client:
            flags = control_pb2.Flags(
                rollback=control_pb2.RollbackThresholds(**{**BASE_THRESHOLDS, **trigger.thresholds})
            )
            await client.update_flags(flags, ["rollback"], actor="bench", reason="thresholds")
            await client.promote(actor="bench", reason="shadow")
            snap = await client.set_weight(50, actor="bench", reason="split")
        split_version = snap.version
        await until(
            lambda: all(r.config.current.version == split_version for r in stack.routers), 10, 0.005
        )
        failed: list[float] = []
        tasks = [
            asyncio.create_task(load(c, stop, w, failed))
            for c in stack.clients
            for w in range(args.concurrency)
        ]
        await asyncio.sleep(args.warmup)
        committed: dict[str, float] = {}

        def observe(d: dec.Decision) -> None:
            if d.action is dec.Action.ROLLBACK and "at" not in committed:
                committed["at"] = time.time()

        loop.observers.append(observe)
        onset = time.time()
        stack.vllm.faults.update(trigger.fault)

        value: list[Any] = [None]

        def condition() -> bool:
            if trigger.rule == "health":
                h = loop.health.view("vllm")
                return h.state is HealthState.UNHEALTHY
            cur = control.controller.current
            if cur.state.migration.status is RolloutStatus.ABORTED:
                return True  # the loop got there between two polls
            results = rules.evaluate(cur.state.flags.rollback, loop.signals(cur, time.time()))
            for r in results:
                if r.rule == trigger.rule and r.outcome is rules.Outcome.FAIL:
                    value[0] = rules.json_number(r.value)
                    return True
            return False

        met = await until(condition, 60, 0.005)
        if trigger.rule == "health":
            since = loop.health.view("vllm").since
            met = since if since is not None else met
        await until(lambda: "at" in committed, 60, 0.002)
        rolled = control.controller.current.version
        applied = await until(
            lambda: all(r.config.current.version >= rolled for r in stack.routers), 30, 0.002
        )
        return Sample(
            name,
            onset_to_condition_s=met - onset,
            condition_to_commit_s=committed["at"] - met,
            condition_to_applied_s=applied - met,
            onset_to_applied_s=applied - onset,
            rule_value=value[0],
            user_errors=sum(1 for t in failed if onset <= t <= applied),
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await stack.close()


def summarize(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys(s.trigger for s in samples):
        mine = [s for s in samples if s.trigger == name]
        out[name] = {}
        for metric in (
            "onset_to_condition_s",
            "condition_to_commit_s",
            "condition_to_applied_s",
            "onset_to_applied_s",
            "user_errors",
        ):
            values = [getattr(s, metric) for s in mine]
            out[name][metric] = {
                "median": statistics.median(values),
                "max": max(values),
                "min": min(values),
            }
    return out


def table(summary: dict[str, dict[str, dict[str, float]]], runs: int) -> list[str]:
    lines = [
        "| trigger | onset -> condition met | condition -> committed | "
        "condition -> all routers applied | onset -> all routers applied | user errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in summary.items():

        def cell(metric: str, stats: dict[str, dict[str, float]] = m) -> str:
            s = stats[metric]
            return f"{s['median']:.2f} s (max {s['max']:.2f})"

        lines.append(
            f"| {name} | {cell('onset_to_condition_s')} | {cell('condition_to_commit_s')} | "
            f"{cell('condition_to_applied_s')} | {cell('onset_to_applied_s')} | "
            f"{m['user_errors']['median']:.0f} (max {m['user_errors']['max']:.0f}) |"
        )
    lines.append(f"(median and max of {runs} run(s) per trigger)")
    return lines


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--triggers", default=",".join(TRIGGERS), help="comma-separated")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--routers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=8, help="load streams per router")
    p.add_argument("--evaluation-interval", type=float, default=1.0, help="seconds (default 1)")
    p.add_argument("--report-interval", type=float, default=1.0, help="router stats, seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="healthy load before the fault")
    p.add_argument("--seed", type=int, default=1, help="for the start phase of each run")
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    args = p.parse_args(argv)
    unknown = [t for t in args.triggers.split(",") if t not in TRIGGERS]
    if unknown:
        p.error(f"unknown trigger(s) {', '.join(unknown)} (known: {', '.join(TRIGGERS)})")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    samples: list[Sample] = []
    rng = random.Random(args.seed)
    for name in args.triggers.split(","):
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
                sample = await one_run(args, name, Path(tmp), rng)
            samples.append(sample)
            print(
                f"{name} run {i + 1}: condition met {sample.onset_to_condition_s:.2f}s after "
                f"onset, all routers applied {sample.condition_to_applied_s:.2f}s after that",
                flush=True,
            )
    summary = summarize(samples)
    worst = max(s.condition_to_applied_s for s in samples)
    return {
        "routers": args.routers,
        "runs": args.runs,
        "evaluation_interval_s": args.evaluation_interval,
        "report_interval_s": args.report_interval,
        "summary": summary,
        "samples": [s.__dict__ for s in samples],
        "goal_s": GOAL_S,
        "worst_condition_to_applied_s": worst,
        "verdict": "PASS" if worst < GOAL_S else "FAIL",
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count() or 0,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    result = asyncio.run(run(args))
    print()
    print("\n".join(table(result["summary"], args.runs)))
    print(
        f"goal: condition met -> all {args.routers} routers applied < {GOAL_S:g} s "
        f"(worst {result['worst_condition_to_applied_s']:.2f} s): {result['verdict']}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    # The control service logs each rollback as a warning; the bench prints its own lines.
    logging.basicConfig(level=logging.ERROR)
    sys.exit(main())
