"""How fast can the simulator stream? (And do the realistic profiles give the intended numbers?)

Spawns ``llm-sim`` as a subprocess pinned to one core (``taskset -c``), drives it from this
process (pinned to the other cores) with N concurrent streaming clients, and prints a table.

    .venv/bin/python bench/sim_throughput.py                      # both flavours, ITL=0
    .venv/bin/python bench/sim_throughput.py --clients 64 --duration 10
    .venv/bin/python bench/sim_throughput.py --itl-ms 1 --clients 64 --tokens 500
    .venv/bin/python bench/sim_throughput.py --realistic          # titan profiles, 50 users, ~3 min

Throughput mode counts every token line/event the clients receive in the measuring window
(after a warm-up) and reads the server's CPU time from /proc, so "server CPU %" near 100 means the
simulator itself was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from llmcore.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
_LISTEN_RE = re.compile(rb"listening on (http://\S+)")


@dataclass
class Counters:
    lines: int = 0
    requests: int = 0
    overhead: int = 0  # non-token lines of completed requests
    errors: int = 0
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


@dataclass
class Result:
    label: str
    clients: int
    seconds: float
    tokens: int
    requests: int
    errors: int
    cpu_pct: float | None
    ttft: list[float]
    gaps: list[float]

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn(flavor: str, core: int | None, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "llmsim.main", "--flavor", flavor, "--port", "0"]
    cmd += extra
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
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


def _request(flavor: str, prompt: str, system: str | None) -> tuple[str, bytes, int]:
    """(path, body, non-token lines per response) for one streaming chat request."""
    messages = [{"role": "user", "content": prompt}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    if flavor == "ollama":
        body = {"model": "qwen3:8b", "messages": messages, "stream": True}
        return "/api/chat", orjson.dumps(body), 1  # the done line
    body = {"model": "Qwen/Qwen3-8B", "messages": messages, "stream": True}
    # SSE: two newlines per event; role chunk, finish chunk and [DONE] carry no token.
    return "/v1/chat/completions", orjson.dumps(body), 3


_FILLER = ("retrieved", "note", "about", "the", "graph", "node", "its", "recent", "memory")


def _unique_context(prompt: str, k: int) -> str:
    """About 90 tokens that differ for every request (a question plus retrieved snippets)."""
    words = [_FILLER[(k * 7 + i * 3) % len(_FILLER)] + str((k * 31 + i) % 97) for i in range(80)]
    return f"{prompt} #{k}: " + " ".join(words)


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    flavor: str,
    prompt: str,
    system: str | None,
    deadline: float,
    c: Counters,
    timed: bool,
) -> None:
    path, body, overhead = _request(flavor, prompt, system)
    per_event = 2 if flavor == "vllm" else 1
    k = 0
    while time.monotonic() < deadline:
        if timed:  # realistic mode: every request has its own (uncacheable) context
            k += 1
            path, body, overhead = _request(flavor, _unique_context(prompt, k), system)
        t0 = time.monotonic()
        last = 0.0
        try:
            async with session.post(url + path, data=body) as resp:
                if resp.status != 200:
                    c.errors += 1
                    await resp.read()
                    continue
                async for chunk in resp.content.iter_any():
                    c.lines += chunk.count(b"\n")  # halved for SSE when reporting
                    if timed:
                        now = time.monotonic()
                        if last == 0.0:
                            c.ttft.append(now - t0)
                        else:
                            c.gaps.append(now - last)
                        last = now
                c.requests += 1
                c.overhead += overhead * per_event
        except (TimeoutError, aiohttp.ClientError):
            c.errors += 1


async def drive(
    url: str,
    flavor: str,
    clients: int,
    duration: float,
    warmup: float,
    pid: int,
    *,
    timed: bool = False,
    system: str | None = None,
) -> Result:
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        c = Counters()
        end = time.monotonic() + warmup + duration
        tasks = [
            asyncio.create_task(
                _client(session, url, flavor, f"question {i} about memory", system, end, c, timed)
            )
            for i in range(clients)
        ]
        await asyncio.sleep(warmup)
        lines0, over0, req0, cpu0 = c.lines, c.overhead, c.requests, _cpu_seconds(pid)
        gap0, ttft0 = len(c.gaps), len(c.ttft)
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        t1 = time.monotonic()
        lines, over, reqs, cpu1 = c.lines, c.overhead, c.requests, _cpu_seconds(pid)
        gaps, ttft = c.gaps[gap0:], c.ttft[ttft0:]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    divisor = 2 if flavor == "vllm" else 1
    tokens = ((lines - lines0) - (over - over0)) // divisor
    cpu_pct = None if cpu0 is None or cpu1 is None else 100.0 * (cpu1 - cpu0) / (t1 - t0)
    return Result(flavor, clients, t1 - t0, tokens, reqs - req0, c.errors, cpu_pct, ttft, gaps)


def _pct(values: list[float], q: float) -> float:
    """:func:`llmcore.stats.percentile` at ``q`` (0..1 here); NaN for no values."""
    value = percentile(values, q * 100)
    return float("nan") if value is None else value


def print_table(title: str, results: list[Result]) -> None:
    print(f"\n{title}")
    head = f"{'flavor':<14}{'clients':>8}{'secs':>7}{'tokens':>10}{'tok/s':>10}{'reqs':>7}"
    head += f"{'errors':>7}{'server CPU':>11}{'TTFT p50':>10}{'ITL p50':>9}{'ITL p99':>9}"
    print(head)
    print("-" * len(head))
    for r in results:
        cpu = f"{r.cpu_pct:.0f}%" if r.cpu_pct is not None else "n/a"
        ttft = f"{_pct(r.ttft, 0.5) * 1e3:.0f}ms" if r.ttft else "-"
        itl50 = f"{statistics.median(r.gaps) * 1e3:.0f}ms" if r.gaps else "-"
        itl99 = f"{_pct(r.gaps, 0.99) * 1e3:.0f}ms" if r.gaps else "-"
        print(
            f"{r.label:<14}{r.clients:>8}{r.seconds:>7.1f}{r.tokens:>10}{r.tok_s:>10.0f}"
            f"{r.requests:>7}{r.errors:>7}{cpu:>11}{ttft:>10}{itl50:>9}{itl99:>9}"
        )


def _pin_self(server_core: int | None) -> None:
    if server_core is None or not hasattr(os, "sched_setaffinity"):
        return
    others = set(os.sched_getaffinity(0)) - {server_core}
    if others:
        os.sched_setaffinity(0, others)


async def _run(args: argparse.Namespace) -> None:
    core = None if args.no_pin else args.core
    _pin_self(core)
    flavors = ["ollama", "vllm"] if args.flavor == "both" else [args.flavor]
    results: list[Result] = []
    if args.realistic:
        system = " ".join(["You are memOS, a careful research assistant."] * 60)
        for flavor in flavors:
            proc, url = spawn(
                flavor, core, ["--profile", f"titan-{flavor}", *args.sim_args.split()]
            )
            try:
                r = await drive(
                    url, flavor, 50, args.duration, args.warmup, proc.pid, timed=True, system=system
                )
                r.label = f"titan-{flavor}"
                results.append(r)
            finally:
                stop(proc)
        print_table("Realistic profiles, 50 concurrent users (closed loop)", results)
        return
    extra = [
        "--profile", "test", "--itl-ms", str(args.itl_ms),
        "--ttft-ms", "0", "--prompt-token-ms", "0",
        "--completion-tokens", str(args.tokens), "--max-num-seqs", str(max(256, args.clients)),
        "--num-parallel", str(args.clients), *args.sim_args.split(),
    ]  # fmt: skip
    for flavor in flavors:
        proc, url = spawn(flavor, core, extra)
        try:
            results.append(
                await drive(url, flavor, args.clients, args.duration, args.warmup, proc.pid)
            )
        finally:
            stop(proc)
    pin = f"server pinned to core {core}" if core is not None else "no pinning"
    itl = "Zero ITL" if args.itl_ms == 0 else f"ITL {args.itl_ms:g} ms"
    print_table(f"{itl}, {args.tokens} tokens per request, {pin}", results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flavor", choices=["ollama", "vllm", "both"], default="both")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--tokens", type=int, default=2000, help="completion tokens per request")
    p.add_argument("--duration", type=float, help="measuring window, s (5; realistic 60)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (1; realistic 10)")
    p.add_argument("--itl-ms", type=float, default=0.0, help="inter-token latency to simulate")
    p.add_argument("--core", type=int, default=0, help="CPU core for the simulator")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--sim-args", default="", help="extra llm-sim flags, e.g. '--itl-ms 30'")
    p.add_argument("--realistic", action="store_true", help="titan profiles, 50 users")
    args = p.parse_args()
    if args.duration is None:
        args.duration = 60.0 if args.realistic else 5.0
    if args.warmup is None:
        args.warmup = 10.0 if args.realistic else 1.0
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run(args))
    else:
        uvloop.run(_run(args))


if __name__ == "__main__":
    main()
