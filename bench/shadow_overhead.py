"""Shadow overhead: what does mirroring requests cost the primary's TTFT?

Spawns an Ollama-flavour and a vLLM-flavour simulator as subprocesses (``llm-sim``, port 0; the
Ollama one with one slot per client, so TTFT is not queueing), starts a real router in this
process in front of them (SHADOW phase: Ollama answers, vLLM is the shadow), and drives it over
gRPC with ``--concurrency`` closed-loop clients. The sample rate switches between 0 % and
``--rate`` (100 %) in interleaved rounds: the order alternates each round, and a round starts
only when the previous round's shadows have finished, so both modes see the same machine, warm
pools and drift. TTFT is measured by the client, from the call to the first text delta.

Prints one table (TTFT and total p50/p90/p99, this process's CPU per request), the added TTFT
pooled over all rounds, and the median of the per-round differences (robust to a noise burst in
one round). ``--calibrate`` runs both modes at 0 % (an A/A run): the noise floor to read the
difference against. Exit status 1 when the per-round p99 difference is ``--goal-ms`` (1 ms) or
more.

    .venv/bin/python bench/shadow_overhead.py                       # 20 rounds x 100 requests
    .venv/bin/python bench/shadow_overhead.py --calibrate           # the A/A noise floor
    .venv/bin/python bench/shadow_overhead.py --rate 0.05           # a realistic sample
    .venv/bin/python bench/shadow_overhead.py --sim-args "--ttft-ms 20 --itl-ms 10"
    .venv/bin/python bench/shadow_overhead.py --sim-cores 0 --router-core 1

The clients share this process (and its event loop) with the router, which is pessimistic: the
shadow's work can delay the client's own reading too. Loopback only; the subprocesses are stopped
on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from llmcore.stats import percentile
from router_service.app import start_router
from router_service.config import RoutingConfig, bootstrap_config
from router_service.settings import RouterSettings
from router_service.shadow import ShadowMirror

ROOT = Path(__file__).resolve().parent.parent
_LISTEN_RE = re.compile(rb"listening on (http://\S+)")
OFF, ON = "off", "on"
MODES = (OFF, ON)


@dataclass
class Samples:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0  # this process's CPU (router and clients) during the rounds
    # Per round: (TTFT p50, TTFT p99) of that round's requests.
    rounds: list[tuple[float, float]] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    """:func:`llmcore.stats.percentile`; NaN when a round has no samples."""
    value = percentile(values, q)
    return math.nan if value is None else value


async def one(stub: router_pb2_grpc.RouterServiceAsyncStub, rid: str, out: Samples) -> None:
    t0 = time.perf_counter()
    ttft: float | None = None
    try:
        async for msg in stub.Generate(
            router_pb2.GenerateRequest(request_id=rid, prompt=f"summarise note {rid}")
        ):
            if ttft is None and msg.HasField("delta"):
                ttft = time.perf_counter() - t0
    except grpc.aio.AioRpcError:
        out.errors += 1
        return
    if ttft is not None:
        out.ttft_ms.append(ttft * 1000)
        out.total_ms.append((time.perf_counter() - t0) * 1000)


async def round_of(
    stub: router_pb2_grpc.RouterServiceAsyncStub,
    label: str,
    requests: int,
    concurrency: int,
    out: Samples,
) -> None:
    queue = iter(range(requests))

    async def client() -> None:
        for i in queue:
            await one(stub, f"{label}-{i}", out)

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def settle(mirror: ShadowMirror) -> None:
    async with asyncio.timeout(60):
        await mirror.wait_for(lambda: mirror.in_flight == 0)


def spawn(
    flavor: str, extra: list[str], core: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """An ``llm-sim`` subprocess on a free port, and its URL (from its first log line)."""
    cmd = [sys.executable, "-m", "llmsim.main", "--flavor", flavor, "--port", "0"]
    cmd += extra
    if core is not None:
        cmd = ["taskset", "-c", core, *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = _LISTEN_RE.search(line)
        if m:
            return proc, m.group(1).decode()
    proc.kill()
    raise RuntimeError(f"simulator did not start: {' '.join(cmd)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def configs(settings: RouterSettings, rate: float, calibrate: bool) -> dict[str, RoutingConfig]:
    """SHADOW phase (Ollama answers, vLLM shadows): "off" samples nothing, "on" samples
    ``rate``; with ``calibrate`` "on" samples nothing too (an A/A run: the noise floor)."""
    base = bootstrap_config(settings.catalog())
    rates = {OFF: 0.0, ON: 0.0 if calibrate else rate}
    return {
        mode: dataclasses.replace(
            base,
            version=1,
            phase="SHADOW",
            shadow_enabled=True,
            shadow_provider="vllm",
            shadow_sample_rate=rates[mode],
        )
        for mode in MODES
    }


async def run(args: argparse.Namespace) -> int:
    extra = shlex.split(args.sim_args)
    # One Ollama slot per client, so TTFT is the router's and the engine's, not queueing.
    cores = args.sim_cores.split(",") if args.sim_cores else [None, None]
    if args.router_core is not None:
        os.sched_setaffinity(0, {args.router_core})
    ollama, ollama_url = spawn(
        "ollama", ["--num-parallel", str(args.concurrency), *extra], cores[0]
    )
    vllm, vllm_url = spawn("vllm", extra, cores[-1])
    try:
        settings = RouterSettings(
            host="127.0.0.1",
            port=0,
            ollama_base_url=ollama_url,
            vllm_base_url=vllm_url,
            shadow_max_concurrency=args.concurrency * 4,
            shadow_queue_size=args.concurrency * 16,
            grace_period_s=0.5,
        )
        app = await start_router(settings)
        assert app.shadow is not None
        mirror = app.shadow
        cfgs = configs(settings, args.rate, args.calibrate)
        samples = {mode: Samples() for mode in MODES}
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
        stub = router_pb2_grpc.RouterServiceStub(channel)
        try:
            for mode in MODES:  # warm-up: connections, pools, first-use costs
                app.config.swap(cfgs[mode])
                await round_of(stub, f"warm{mode}", args.requests // 4, args.concurrency, Samples())
                await settle(mirror)
            compared0 = mirror.counters.compared
            for r in range(args.rounds):
                order = MODES if r % 2 == 0 else MODES[::-1]
                for mode in order:
                    app.config.swap(cfgs[mode])
                    cpu0 = time.process_time()
                    this = Samples()
                    await round_of(stub, f"r{r}-{mode}", args.requests, args.concurrency, this)
                    await settle(mirror)
                    s = samples[mode]
                    s.cpu_s += time.process_time() - cpu0
                    s.ttft_ms += this.ttft_ms
                    s.total_ms += this.total_ms
                    s.errors += this.errors
                    s.rounds.append((pct(this.ttft_ms, 50), pct(this.ttft_ms, 99)))
            compared = mirror.counters.compared - compared0
        finally:
            await channel.close()
            await app.stop(0)
    finally:
        stop(ollama)
        stop(vllm)
    return report(args, samples, compared, mirror)


def report(
    args: argparse.Namespace, samples: dict[str, Samples], compared: int, mirror: ShadowMirror
) -> int:
    print(
        f"shadow overhead: {args.rounds} rounds x {args.requests} requests per mode, "
        f"concurrency {args.concurrency}, sim args {args.sim_args!r}, "
        f"sim cores {args.sim_cores or 'any'}, router core {args.router_core}"
        + (" (CALIBRATION: both modes at 0 %)" if args.calibrate else "")
    )
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}"
    )
    print()
    head = (
        "| shadow sample | requests | errors | TTFT p50 | p90 | p99 | total p50 | total p99 "
        "| router CPU/request |"
    )
    print(head)
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = {OFF: "0%", ON: "0% (A/A)" if args.calibrate else f"{args.rate:.0%}"}
    for mode in MODES:
        s = samples[mode]
        print(
            f"| {labels[mode]} | {len(s.ttft_ms)} | {s.errors} | {pct(s.ttft_ms, 50):.2f} | "
            f"{pct(s.ttft_ms, 90):.2f} | {pct(s.ttft_ms, 99):.2f} | {pct(s.total_ms, 50):.2f} | "
            f"{pct(s.total_ms, 99):.2f} | {s.cpu_s / max(1, len(s.ttft_ms)) * 1000:.2f} ms |"
        )
    off, on = samples[OFF], samples[ON]
    deltas = {q: pct(on.ttft_ms, q) - pct(off.ttft_ms, q) for q in (50, 90, 99)}
    mean_delta = statistics.fmean(on.ttft_ms) - statistics.fmean(off.ttft_ms)
    print()
    print(
        f"added TTFT ({labels[ON]} - 0%): "
        + ", ".join(f"p{q} {d:+.2f} ms" for q, d in deltas.items())
        + f", mean {mean_delta:+.2f} ms"
    )
    print(
        f"shadows compared: {compared} of {len(on.ttft_ms)}; dropped {mirror.counters.dropped}; "
        f"skipped {dict(mirror.counters.skipped) or 0}"
    )
    # Paired by round (each round ran both modes back to back): the median of the per-round
    # differences is robust to a noise burst that hits one round of one mode.
    paired = [
        (b50 - a50, b99 - a99) for (a50, a99), (b50, b99) in zip(off.rounds, on.rounds, strict=True)
    ]
    med50 = statistics.median(d for d, _ in paired)
    med99 = statistics.median(d for _, d in paired)
    print(
        f"added TTFT, median of the {len(paired)} per-round differences: "
        f"p50 {med50:+.2f} ms, p99 {med99:+.2f} ms"
    )
    ok = med99 < args.goal_ms
    print(f"goal: per-round p99 added < {args.goal_ms:g} ms (median): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=20, help="interleaved rounds per mode")
    p.add_argument("--requests", type=int, default=100, help="requests per round")
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop clients")
    p.add_argument("--sim-args", default="", help="extra llm-sim flags, e.g. '--ttft-ms 20'")
    p.add_argument(
        "--sim-cores", default="", help="pin the simulators: 'A,B' (ollama, vllm) or 'A' (both)"
    )
    p.add_argument("--router-core", type=int, default=None, help="pin this process (router)")
    p.add_argument("--rate", type=float, default=1.0, help="sample rate of the 'on' mode")
    p.add_argument(
        "--calibrate", action="store_true", help="A/A: both modes at 0 %% (the noise floor)"
    )
    p.add_argument("--goal-ms", type=float, default=1.0, help="allowed added TTFT at p99")
    args = p.parse_args()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
