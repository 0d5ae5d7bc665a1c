"""Config propagation: from ``SetWeight`` returning to every router having applied and ACKed it.

Starts a real control service as a subprocess (``python -m control_service.main``, port 0, a
SQLite file in a temp dir), connects ``--routers`` real router-side config subscribers from this
process (``ConfigSubscriber``, each on its own grpc.aio channel and TCP connection, each with its
own ``ConfigHolder`` and persist file, so every change goes through the real apply path: validate,
swap, atomic persist with fsync, ACK), then issues ``--changes`` SetWeight calls alternating
between ``--weights``. For each change it measures, from the RPC returning:

* applied: until every subscriber's holder shows the new version (recorded by the subscriber's
  state callback, which runs after the swap and the persist, right before the ACK is written);
* control ACKs: until the control service's own view (GetState, routers' applied_version) shows
  every router on the new version - polled, so an upper bound including one GetState round trip.

    .venv/bin/python bench/control_propagation.py                      # 100 routers, 50 changes
    .venv/bin/python bench/control_propagation.py --routers 20 --changes 10 --json out.json

Loopback only; bounded by ``--changes`` and ``--max-seconds``; the subprocess and the temp dir
are removed on exit. The goal (issue 4): p99 under 100 ms for 100 routers on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google import protobuf

from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient
from llmcore.stats import percentile
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

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "llm-control ready on "
GOAL_P99_MS = 100.0


# --- measuring ------------------------------------------------------------------------------


class Tracker:
    """Counts, per config version, the subscribers whose holder shows it; notes when all do."""

    def __init__(self, routers: int) -> None:
        self.routers = routers
        self._last: list[int] = [0] * routers
        self._count: dict[int, int] = {}
        self._done: dict[int, asyncio.Event] = {}
        self.done_at: dict[int, float] = {}

    def callback(self, index: int, holder: ConfigHolder) -> Callable[[SubscriberState, int], None]:
        def on_change(state: SubscriberState, applied_version: int) -> None:
            version = holder.current.version
            if version == self._last[index]:
                return
            self._last[index] = version
            count = self._count[version] = self._count.get(version, 0) + 1
            if count == self.routers:
                self.done_at[version] = time.perf_counter()
                self._event(version).set()

        return on_change

    def _event(self, version: int) -> asyncio.Event:
        return self._done.setdefault(version, asyncio.Event())

    def count(self, version: int) -> int:
        return self._count.get(version, 0)

    async def wait_all(self, version: int) -> float:
        """When the last subscriber applied ``version`` (``perf_counter`` seconds)."""
        await self._event(version).wait()
        return self.done_at[version]


@dataclass
class Sample:
    version: int
    weight: int
    rpc_ms: float
    applied_ms: float  # from the RPC returning to all holders showing the version
    applied_from_call_ms: float  # the same, from the RPC starting
    control_ms: float  # from the RPC returning to GetState showing every router ACKed
    applied_before_return: int  # subscribers that had applied when the RPC returned


@dataclass
class Run:
    routers: int
    changes: int
    weights: list[int]
    samples: list[Sample] = field(default_factory=list)
    connect_s: float = 0.0
    measure_s: float = 0.0
    bench_cpu_s: float = 0.0
    control_cpu_s: float | None = None


def _at(values: Sequence[float], q: float) -> float:
    """:func:`llmcore.stats.percentile` of a non-empty run."""
    value = percentile(values, q)
    if value is None:
        raise ValueError("no samples")
    return value


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": _at(values, 50),
        "p95": _at(values, 95),
        "p99": _at(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


# --- the control service subprocess ---------------------------------------------------------


@dataclass
class ControlProcess:
    proc: subprocess.Popen[str]
    target: str
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def spawn_control(workdir: Path) -> ControlProcess:
    """``python -m control_service.main`` on 127.0.0.1, port 0, with its db in ``workdir``
    (its log in ``workdir/control.log``); :func:`wait_ready` reads its address."""
    env = {
        **os.environ,
        "LLM_CONTROL_HOST": "127.0.0.1",
        "LLM_CONTROL_PORT": "0",
        "LLM_CONTROL_DB_PATH": str(workdir / "control.db"),
        "LLM_CONTROL_GRACE_PERIOD_S": "1",
        "LLM_CONTROL_INSECURE": "true",  # loopback only, for the measurement
        "PYTHONUNBUFFERED": "1",
    }
    log_path = workdir / "control.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_service.main", "--log-level", "WARNING"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    return ControlProcess(proc, "", log_path)


async def wait_ready(control: ControlProcess, timeout_s: float = 30.0) -> None:
    """Waits for the ready line (``llm-control ready on HOST:PORT ...``) and notes the address;
    stops the process when it does not come."""
    stdout = control.proc.stdout
    assert stdout is not None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                line = await asyncio.to_thread(stdout.readline)
                if not line:
                    code = await asyncio.to_thread(control.proc.wait)
                    raise RuntimeError(f"control service exited ({code}):\n{control.log_tail()}")
                if line.startswith(READY_PREFIX):
                    control.target = line.removeprefix(READY_PREFIX).split()[0]
                    return
    except BaseException:
        control.stop()
        raise


# --- routers --------------------------------------------------------------------------------


@dataclass
class Router:
    channel: grpc.aio.Channel
    holder: ConfigHolder
    subscriber: ConfigSubscriber


def start_routers(
    target: str, count: int, workdir: Path, tracker: Tracker, persist: bool = True
) -> list[Router]:
    catalog = Catalog(DEFAULT_ENGINE_NAMES, DEFAULT_TASK_MODELS, DEFAULT_FALLBACKS)
    routers: list[Router] = []
    for i in range(count):
        # A local subchannel pool: one TCP connection per router, as with separate processes.
        channel = grpc.aio.insecure_channel(
            target, options=[*SESSION_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        )
        holder = ConfigHolder(bootstrap_config(catalog))
        router_id = f"bench-r{i:03d}"
        subscriber = ConfigSubscriber(
            channel,
            holder,
            RequestStatsRecorder(),
            SubscriberOptions(
                router_id=router_id,
                address=f"127.0.0.1:{60000 + i}",
                persist_path=workdir / "routers" / router_id / "config.snapshot"
                if persist
                else None,
                report_interval_s=3600.0,
            ),
            on_change=tracker.callback(i, holder),
        )
        subscriber.start()
        routers.append(Router(channel, holder, subscriber))
    return routers


async def stop_routers(routers: Sequence[Router]) -> None:
    await asyncio.gather(*(r.subscriber.stop() for r in routers), return_exceptions=True)
    await asyncio.gather(*(r.channel.close() for r in routers), return_exceptions=True)


async def control_sees(client: ControlClient, version: int, routers: int) -> float:
    """Polls GetState until ``routers`` connected routers ACKed ``version``; when it did."""
    while True:
        state = await client.get_state()
        acked = sum(r.connected and r.applied_version == version for r in state.routers)
        if acked >= routers:
            return time.perf_counter()
        await asyncio.sleep(0.001)


# --- the run --------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, workdir: Path) -> Run:
    run = Run(args.routers, args.changes, args.weights)
    if args.persist_threads:
        # The subscribers persist through asyncio.to_thread, i.e. this process's default
        # executor; a real router has that executor to itself.
        executor = concurrent.futures.ThreadPoolExecutor(
            args.persist_threads, thread_name_prefix="persist"
        )
        asyncio.get_running_loop().set_default_executor(executor)
    control = spawn_control(workdir)
    await wait_ready(control)
    tracker = Tracker(args.routers)
    routers: list[Router] = []
    try:
        async with ControlClient(control.target, timeout=args.per_change_timeout) as client:
            t0 = time.perf_counter()
            routers = start_routers(
                control.target, args.routers, workdir, tracker, persist=not args.no_persist
            )
            first = (await client.get_state()).snapshot.version
            async with asyncio.timeout(args.per_change_timeout * 3):
                await tracker.wait_all(first)
                await control_sees(client, first, args.routers)
            run.connect_s = time.perf_counter() - t0
            print(
                f"{args.routers} router sessions connected and synced on v{first} "
                f"in {run.connect_s:.2f}s",
                flush=True,
            )

            state = (await client.get_state()).snapshot
            if state.migration.phase == control_pb2.PHASE_FACADE:
                snap = await client.promote(actor="bench", reason="propagation benchmark")
                async with asyncio.timeout(args.per_change_timeout):
                    await tracker.wait_all(snap.version)
                    await control_sees(client, snap.version, args.routers)

            wall0, cpu0 = time.perf_counter(), time.process_time()
            control_cpu0 = process_cpu_s(control.proc.pid)
            for k in range(args.changes):
                weight = args.weights[k % len(args.weights)]
                start = time.perf_counter()
                snap = await client.set_weight(
                    weight, actor="bench", reason=f"propagation benchmark {k + 1}"
                )
                returned = time.perf_counter()
                version = snap.version
                before = tracker.count(version)
                async with asyncio.timeout(args.per_change_timeout):
                    applied = await tracker.wait_all(version)
                    acked = await control_sees(client, version, args.routers)
                wrong = [
                    r
                    for r in routers
                    if r.holder.current.version != version
                    or r.holder.current.vllm_percent != float(weight)
                ]
                if wrong:
                    raise RuntimeError(f"{len(wrong)} routers do not serve v{version} at {weight}%")
                run.samples.append(
                    Sample(
                        version=version,
                        weight=weight,
                        rpc_ms=(returned - start) * 1000,
                        applied_ms=max(0.0, applied - returned) * 1000,
                        applied_from_call_ms=(applied - start) * 1000,
                        control_ms=max(0.0, acked - returned) * 1000,
                        applied_before_return=before,
                    )
                )
                if args.gap_ms:
                    await asyncio.sleep(args.gap_ms / 1000)
            run.measure_s = time.perf_counter() - wall0
            run.bench_cpu_s = time.process_time() - cpu0
            control_cpu1 = process_cpu_s(control.proc.pid)
            if control_cpu0 is not None and control_cpu1 is not None:
                run.control_cpu_s = control_cpu1 - control_cpu0
    finally:
        await stop_routers(routers)
        control.stop()
    return run


# --- reporting ------------------------------------------------------------------------------


def _filesystem(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts(workdir: Path, loop_name: str) -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf.__version__,
        "event_loop": loop_name,
        "persist_filesystem": _filesystem(workdir),
    }


def report(run: Run, facts: dict[str, Any], command: str) -> dict[str, Any]:
    samples = run.samples
    rows = {
        "applied at all routers (from return)": summary([s.applied_ms for s in samples]),
        "applied at all routers (from call)": summary([s.applied_from_call_ms for s in samples]),
        "control saw all ACKs (from return)": summary([s.control_ms for s in samples]),
        "SetWeight RPC": summary([s.rpc_ms for s in samples]),
    }
    goal = rows["applied at all routers (from return)"]["p99"]
    cross = rows["control saw all ACKs (from return)"]["p99"]
    verdict = "PASS" if goal < GOAL_P99_MS else "FAIL"
    early = sum(s.applied_before_return for s in samples) / len(samples)

    print()
    print(f"command: {command}")
    print(
        "machine: {cpu_count} CPUs ({cpus_usable} usable), {cpu_model}; {platform}; "
        "Python {python}, grpcio {grpcio}, protobuf {protobuf}, loop {event_loop}; "
        "persist on {persist_filesystem}".format(**facts)
    )
    print(
        f"config propagation: {run.routers} router sessions, {len(samples)} SetWeight changes "
        f"(weights {'/'.join(str(w) for w in run.weights)}), connect {run.connect_s:.2f}s"
    )
    width = max(len(k) for k in rows)
    print(f"{'':{width}}  {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'mean':>8}   (ms)")
    for name, stats in rows.items():
        cells = " ".join(f"{stats[k]:8.1f}" for k in ("p50", "p95", "p99", "max", "mean"))
        print(f"{name:{width}}  {cells}")
    print(f"routers that had applied before SetWeight returned: {early:.1f} on average")
    control_cpu = (
        f"{run.control_cpu_s / run.measure_s:.0%}" if run.control_cpu_s is not None else "n/a"
    )
    print(
        f"CPU over the {run.measure_s:.1f}s of changes: bench process (all routers) "
        f"{run.bench_cpu_s / run.measure_s:.0%}, control service {control_cpu} (of one core)"
    )
    print(
        f"goal: p99 from SetWeight returning to all {run.routers} routers applied < "
        f"{GOAL_P99_MS:g} ms: {verdict} (p99 {goal:.1f} ms; control-side ACK cross-check "
        f"p99 {cross:.1f} ms)"
    )
    return {
        "command": command,
        "machine": facts,
        "routers": run.routers,
        "changes": len(samples),
        "weights": run.weights,
        "connect_s": run.connect_s,
        "measure_s": run.measure_s,
        "bench_cpu_s": run.bench_cpu_s,
        "control_cpu_s": run.control_cpu_s,
        "ms": rows,
        "goal_p99_ms": GOAL_P99_MS,
        "verdict": verdict,
        "samples": [vars(s) for s in samples],
    }


# --- main -----------------------------------------------------------------------------------


def _weights(text: str) -> list[int]:
    try:
        weights = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None
    if len(weights) < 2 or any(not 1 <= w <= 99 for w in weights):
        raise argparse.ArgumentTypeError("need at least two weights, each in [1, 99]")
    if any(a == b for a, b in zip(weights, weights[1:] + weights[:1], strict=True)):
        raise argparse.ArgumentTypeError("consecutive weights must differ (else no new version)")
    return weights


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--routers", type=int, default=100, help="router sessions (default 100)")
    p.add_argument("--changes", type=int, default=50, help="SetWeight calls (default 50)")
    p.add_argument("--weights", type=_weights, default=[30, 70], help="cycled (default 30,70)")
    p.add_argument("--gap-ms", type=float, default=0.0, help="pause between changes")
    p.add_argument(
        "--per-change-timeout", type=float, default=10.0, help="seconds one change may take"
    )
    p.add_argument("--max-seconds", type=float, default=300.0, help="bound on the whole run")
    p.add_argument("--workdir", type=Path, help="parent of the temp dir (db, persist files)")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument(
        "--persist-threads",
        type=int,
        default=0,
        help="threads of the default executor the persists run on (default: Python's, "
        "min(32, cores + 4)); --persist-threads N=routers models one router per process",
    )
    p.add_argument(
        "--no-persist",
        action="store_true",
        help="diagnostic: skip the routers' snapshot persist (not the real apply path)",
    )
    p.add_argument("--json", type=Path, help="also write the results (and samples) here")
    args = p.parse_args(argv)
    if not 1 <= args.routers <= 1000 or not 1 <= args.changes <= 10_000:
        p.error("--routers must be in [1, 1000] and --changes in [1, 10000]")
    return args


async def amain(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llm-propagation-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        facts = machine_facts(workdir, loop_name)
        async with asyncio.timeout(args.max_seconds):
            run = await measure(args, workdir)
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    return report(run, facts, command)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    uvloop: Any = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop
    loop_name = f"uvloop {uvloop.__version__}" if uvloop is not None else "asyncio"
    results = uvloop.run(amain(args, loop_name)) if uvloop else asyncio.run(amain(args, loop_name))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    verdict: str = results["verdict"]
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
