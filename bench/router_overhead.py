"""What does the router cost? Router vs direct vs LiteLLM's proxy, side by side in one run.

    .venv/bin/python -m bench.router_overhead                  # everything, ~10 minutes
    .venv/bin/python -m bench.router_overhead --only ttft --streams 1,64 --rounds 2
    .venv/bin/python -m bench.router_overhead --only soak --soak-s 600   # the issue's 10 minutes
    .venv/bin/python -m bench.router_overhead --py-spy .run/profile      # + py-spy profiles

Processes (all on loopback, all stopped at the end): vLLM-flavoured simulators with fixed timing
(no jitter, no prefill cost) and this load generator pinned to the first core; the router (one
process per simulator) and LiteLLM's proxy pinned to the second core. Paths are interleaved
(the order rotates every round) and repeated; added latency is computed within a round, then
the median over rounds is reported.

Phases:
- ``ttft``: closed-loop streams at 1, 64 and 256 concurrency against an engine with a fixed
  time to first token and a token every ``--itl-ms`` (10): TTFT p50/p99 per path, the added
  TTFT (router - direct, LiteLLM - direct), inter-token gap p50/p99 (buffering shows as a
  gap p50 far below the engine's), tokens/s and the relay's CPU per token.
- ``throughput``: zero inter-token latency, ``--burst-tokens`` per answer, 256 streams: tokens/s
  one router process relays, and the router/direct ratio.
- ``embed``: sequential Embed calls of 32 texts, router vs direct, added latency p50/p99.
- ``soak``: ``--soak-streams`` (1,000) streams held open through one router for ``--soak-s``
  seconds: the router's RSS over time, and after the streams end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson

from bench import _phases
from bench._procs import Proc, Procs, cores, pin_self, rss_mb
from bench.pyspy_summary import summarize
from llmtools.llmbench import OpenAITarget, Prompt, RouterTarget, Target, load_prompts

ENGINE_MODEL = "Qwen/Qwen3-8B"
GOALS = {
    "ttft_overhead_p50_ms_at_64": 1.0,
    "ttft_overhead_p99_ms_at_64": 5.0,
    "litellm_overhead_ratio": 10.0,
    "router_tokens_per_s": 50_000.0,
    "router_direct_ratio_at_256": 0.95,
    "soak_rss_mb": 300.0,
    "soak_spread_pct": 10.0,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="ttft,throughput,embed,soak", help="phases to run")
    p.add_argument("--streams", default="1,64,256", help="concurrency levels of the ttft phase")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window", type=float, default=5.0, help="measuring window per path, s")
    p.add_argument(
        "--single-stream-factor",
        type=float,
        default=3.0,
        help="windows at 1 stream are this many times longer (more samples)",
    )
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--ttft-ms", type=float, default=20.0, help="engine's time to first token")
    p.add_argument("--itl-ms", type=float, default=10.0, help="engine's inter-token latency")
    p.add_argument("--tokens", type=int, default=64, help="tokens per answer in the ttft phase")
    p.add_argument("--burst-streams", type=int, default=256)
    p.add_argument("--burst-tokens", type=int, default=512, help="tokens per answer, ITL 0")
    p.add_argument("--embed-batch", type=int, default=32)
    p.add_argument("--embed-calls", type=int, default=100, help="per path per round")
    p.add_argument("--soak-streams", type=int, default=1000)
    p.add_argument("--soak-s", type=float, default=150.0, help="soak duration (issue: 600)")
    p.add_argument("--soak-itl-ms", type=float, default=100.0)
    p.add_argument("--soak-tokens", type=int, default=200)
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy")
    p.add_argument(
        "--litellm-max-streams",
        type=int,
        default=64,
        help="LiteLLM only up to this concurrency (at 256 it needs minutes per window)",
    )
    p.add_argument("--litellm-bin", help="the litellm executable (default: next to python)")
    p.add_argument(
        "--py-spy",
        type=Path,
        help="also record py-spy profiles of the router (256 paced streams, and ITL 0) to "
        "PREFIX-paced.txt / PREFIX-burst.txt, in extra windows that are not measured",
    )
    p.add_argument(
        "--py-spy-native",
        action="store_true",
        help="native frames too (C, syscalls); py-spy then pauses the router to sample it",
    )
    p.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout (e.g. a git worktree of main) whose router runs beside this "
        "one as path 'base' in the ttft and throughput phases",
    )
    p.add_argument("--output", type=Path, help="write every figure as JSON")
    return p.parse_args(argv)


def _prompts(tokens: int) -> list[Prompt]:
    # memOS-sized requests (a ~500-token shared system prompt): the router's per-request work
    # (proto → JSON) is part of what is measured; the engines charge nothing for the prompt.
    return load_prompts(None, max_tokens=tokens)


def _sim_args(ttft_ms: float, itl_ms: float, max_seqs: int) -> list[str]:
    return [
        "--profile", "test", "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms),
        "--prompt-token-ms", "0", "--jitter", "0", "--load-factor", "0",
        "--completion-tokens", "100000", "--max-num-seqs", str(max_seqs),
    ]  # fmt: skip


_ROUTER_ENV = {
    "LLM_ROUTER_MAX_CONNECTIONS_PER_BACKEND": "1100",
    "LLM_ROUTER_MAX_CONCURRENT_REQUESTS": "2048",
    "LLM_ROUTER_READ_TIMEOUT_S": "120",
}


def _litellm_bin(args: argparse.Namespace) -> str | None:
    if args.litellm_bin:
        return str(args.litellm_bin)
    beside = Path(sys.executable).parent / "litellm"
    return str(beside) if beside.exists() else shutil.which("litellm")


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Procs) -> None:
        self.args = args
        self.procs = procs
        cs = cores()
        self.engine_core = cs[0] if len(cs) >= 2 else None
        self.relay_core = cs[1] if len(cs) >= 2 else None
        if self.engine_core is not None:
            pin_self({self.engine_core})
        self.out: dict[str, Any] = {}
        self.base: dict[str, Proc] = {}  # simulator address -> router of --baseline-tree

    def routers(self, sim: Proc) -> Proc:
        """This checkout's router for ``sim``, and the baseline's when asked for."""
        if self.args.baseline_tree is not None:
            self.base[sim.address] = self.procs.router(
                self.relay_core, vllm_url=sim.address, env=_ROUTER_ENV, tree=self.args.baseline_tree
            )
        return self.procs.router(self.relay_core, vllm_url=sim.address, env=_ROUTER_ENV)

    def _timeout(self) -> float:
        return 300.0

    def targets(
        self, sim: Proc, router: Proc, litellm: Proc | None, litellm_model: str, streams: int
    ) -> dict[str, tuple[Target, int | None]]:
        direct = OpenAITarget(sim.address, ENGINE_MODEL, timeout_s=300, record_arrivals=True)
        via_router = RouterTarget(
            router.address, "vllm", "qwen3:8b", timeout_s=300, record_arrivals=True
        )
        t: dict[str, tuple[Target, int | None]] = {
            "direct": (direct, None),
            "router": (via_router, router.pid),
        }
        base = self.base.get(sim.address)
        if base is not None:
            t["base"] = (
                RouterTarget(base.address, "vllm", "qwen3:8b", timeout_s=300, record_arrivals=True),
                base.pid,
            )
        if litellm is not None and streams <= self.args.litellm_max_streams:
            url, key = litellm.address.split("|")
            t["litellm"] = (
                OpenAITarget(
                    url,
                    litellm_model,
                    timeout_s=300,
                    record_arrivals=True,
                    headers={"authorization": f"Bearer {key}"},
                    label="litellm",
                ),
                litellm.pid,
            )
        return t

    async def windows(
        self,
        name: str,
        sim: Proc,
        router: Proc,
        litellm: Proc | None,
        litellm_model: str,
        streams: int,
        prompts: list[Prompt],
    ) -> dict[str, Any]:
        """``rounds`` x every path, the order rotating each round; added latency per round."""
        a = self.args
        # One stream finishes only a handful of requests in a window: give it more time.
        window = a.window * a.single_stream_factor if streams == 1 else a.window
        rounds: list[dict[str, Any]] = []
        for r in range(a.rounds):
            targets = self.targets(sim, router, litellm, litellm_model, streams)
            order = list(targets)
            order = order[r % len(order) :] + order[: r % len(order)]
            got: dict[str, Any] = {}
            for path in order:
                target, relay_pid = targets[path]
                try:
                    ws = await _phases.measure_window(
                        path, target, prompts, streams, a.warmup, window, relay_pid, sim.pid
                    )
                finally:
                    await target.aclose()
                got[path] = ws.to_json()
                print(f"  {name} streams={streams} round={r + 1} {_line(ws)}", flush=True)
            for path in ("router", "base", "litellm"):
                if path in got:
                    for q in ("p50", "p99"):
                        rel, base = got[path][f"ttft_{q}_ms"], got["direct"][f"ttft_{q}_ms"]
                        if rel is not None and base is not None:
                            got[f"{path}_added_ttft_{q}_ms"] = round(rel - base, 3)
                    if got["direct"]["tokens_per_s"]:
                        got[f"{path}_direct_ratio"] = round(
                            got[path]["tokens_per_s"] / got["direct"]["tokens_per_s"], 4
                        )
            rounds.append(got)
        summary: dict[str, Any] = {"streams": streams, "rounds": rounds}
        for key in sorted({k for g in rounds for k in g if "_added_" in k or "_ratio" in k}):
            summary[key] = _median([g[key] for g in rounds if key in g])
        for path in ("direct", "router", "base", "litellm"):
            for key in ("ttft_p50_ms", "ttft_p99_ms", "router_side_ttft_p50_ms",
                        "router_side_ttft_p99_ms", "gap_p50_ms", "gap_p99_ms", "tokens_per_s",
                        "relay_cpu_us_per_token", "relay_cpu_pct", "loadgen_cpu_pct",
                        "engine_cpu_pct"):  # fmt: skip
                vals = [g[path][key] for g in rounds if path in g and g[path][key] is not None]
                if vals:
                    summary[f"{path}_{key}"] = _median(vals)
        return summary

    async def profile(self, label: str, router: Proc, run: Any) -> None:
        """py-spy on the router while ``run`` (a coroutine) runs; collapsed stacks to a file."""
        spy = Path(sys.executable).parent / "py-spy"
        if self.args.py_spy is None or not spy.exists():
            return
        out = Path(f"{self.args.py_spy}-{label}.txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(spy), "record", "--pid", str(router.pid), "--rate", "250", "--format", "raw"]
        cmd += ["--output", str(out), "--duration", str(int(self.args.window + 1))]
        cmd += ["--native"] if self.args.py_spy_native else ["--nonblocking"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await run
        finally:
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        print(f"  py-spy profile of the router ({label}): {out}", flush=True)
        try:
            print(summarize(out, top=15), flush=True)
        except OSError as exc:
            print(f"  no profile: {exc}", flush=True)


def _line(ws: _phases.WindowStats) -> str:
    return (
        f"{ws.path:<8} req={ws.requests:<5} ttft p50={ws.ttft_p50_ms} p99={ws.ttft_p99_ms} "
        f"(in router p50={ws.router_side_ttft_p50_ms}) "
        f"gap p50={ws.gap_p50_ms} tok/s={ws.tokens_per_s:,.0f} relay cpu={ws.relay_cpu_pct}% "
        f"({ws.relay_cpu_us_per_token} us/tok) loadgen={ws.loadgen_cpu_pct}% "
        f"engine={ws.engine_cpu_pct}% errors={ws.errors or 0}"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = set(args.only.split(","))
    with Procs() as procs:
        b = Bench(args, procs)
        ec, rc = b.engine_core, b.relay_core
        out: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
        needs_paced = bool(phases & {"ttft", "embed"})
        sim_paced = router_paced = sim_burst = router_burst = litellm = None
        if needs_paced:
            sim_paced = procs.simulator("vllm", ec, _sim_args(args.ttft_ms, args.itl_ms, 2048))
            router_paced = b.routers(sim_paced)
        if "throughput" in phases:
            sim_burst = procs.simulator("vllm", ec, _sim_args(0, 0, 2048))
            router_burst = b.routers(sim_burst)
        litellm_bin = None if args.no_litellm else _litellm_bin(args)
        if "ttft" in phases and litellm_bin is not None and sim_paced is not None:
            print("starting LiteLLM's proxy (takes ~15 s)...", flush=True)
            try:
                litellm = procs.litellm(rc, {"paced": sim_paced.address}, litellm_bin)
            except RuntimeError as exc:
                out["litellm_error"] = str(exc)[-2000:]
                print(f"LiteLLM did not start: {exc}", flush=True)
        elif "ttft" in phases:
            out["litellm_error"] = "not run (--no-litellm or no litellm executable)"

        if "ttft" in phases and sim_paced and router_paced:
            prompts = _prompts(args.tokens)
            out["ttft"] = []
            for streams in [int(x) for x in args.streams.split(",")]:
                out["ttft"].append(
                    await b.windows(
                        "ttft", sim_paced, router_paced, litellm, "paced", streams, prompts
                    )
                )
            if args.py_spy is not None:
                target = RouterTarget(router_paced.address, "vllm", "qwen3:8b", timeout_s=300)
                await b.profile(
                    "paced",
                    router_paced,
                    _phases.measure_window(
                        "router", target, prompts, 256, 0.5, args.window, None, sim_paced.pid
                    ),
                )
                await target.aclose()
        if litellm is not None:
            procs.stop(litellm)

        if "throughput" in phases and sim_burst and router_burst:
            prompts = _prompts(args.burst_tokens)
            out["throughput"] = await b.windows(
                "burst", sim_burst, router_burst, None, "", args.burst_streams, prompts
            )
            if args.py_spy is not None:
                target = RouterTarget(router_burst.address, "vllm", "qwen3:8b", timeout_s=300)
                await b.profile(
                    "burst",
                    router_burst,
                    _phases.measure_window(
                        "router", target, prompts, args.burst_streams, 0.5, args.window, None,
                        sim_burst.pid,
                    ),
                )  # fmt: skip
                await target.aclose()
            for proc in (router_burst, b.base.pop(sim_burst.address, None), sim_burst):
                if proc is not None:
                    procs.stop(proc)

        if "embed" in phases and sim_paced and router_paced:
            rounds = []
            for _ in range(args.rounds):
                lat = await _phases.embed_round(
                    router_paced.address,
                    sim_paced.address,
                    "mixedbread-ai/mxbai-embed-large-v1",
                    args.embed_batch,
                    args.embed_calls,
                )
                d50, d99 = _pct(lat["direct"], 50), _pct(lat["direct"], 99)
                r50, r99 = _pct(lat["router"], 50), _pct(lat["router"], 99)
                rounds.append(
                    {
                        "direct_p50_ms": d50, "direct_p99_ms": d99,
                        "router_p50_ms": r50, "router_p99_ms": r99,
                        "added_p50_ms": round(r50 - d50, 3), "added_p99_ms": round(r99 - d99, 3),
                    }
                )  # fmt: skip
                print(f"  embed batch={args.embed_batch} {rounds[-1]}", flush=True)
            out["embed"] = {
                "batch": args.embed_batch,
                "calls_per_round": args.embed_calls,
                "rounds": rounds,
                "added_p50_ms": _median([r["added_p50_ms"] for r in rounds]),
                "added_p99_ms": _median([r["added_p99_ms"] for r in rounds]),
            }
        base_paced = b.base.pop(sim_paced.address, None) if sim_paced else None
        for proc in (router_paced, base_paced, sim_paced):
            if proc is not None:
                procs.stop(proc)

        if "soak" in phases:
            sim = procs.simulator(
                "vllm", ec, _sim_args(args.ttft_ms, args.soak_itl_ms, args.soak_streams + 64)
            )
            router = procs.router(rc, vllm_url=sim.address, env=_ROUTER_ENV)
            target = RouterTarget(
                router.address, "vllm", "qwen3:8b", timeout_s=args.soak_s + 300, channels=4
            )
            print(
                f"  soak: {args.soak_streams} streams for {args.soak_s:.0f}s "
                f"(router RSS idle {rss_mb(router.pid):.1f} MB)",
                flush=True,
            )
            try:
                res = await _phases.soak(
                    target,
                    _prompts(args.soak_tokens),
                    router.address,
                    router.pid,
                    args.soak_streams,
                    args.soak_s,
                    ramp_s=min(10.0, args.soak_s / 4),
                    every_s=5.0,
                )
            finally:
                await target.aclose()
            out["soak"] = res.to_json(settle_s=min(30.0, args.soak_s / 3))
            print(f"  soak: { ({k: v for k, v in out['soak'].items() if k != 'samples'}) }")
    return out


def _pct(xs: list[float], q: float) -> float:
    from llmcore.stats import percentile

    v = percentile(xs, q)
    return round((v or 0.0) * 1e3, 3)


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    return {
        "cpus": len(cores()),
        "cpu_model": model,
        "python": platform.python_version(),
        "loadavg_at_start": load,
    }


def verdicts(out: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """(figure, value, goal, met) for the table at the end."""
    rows: list[tuple[str, Any, str, bool | None]] = []
    by_streams = {w["streams"]: w for w in out.get("ttft", [])}
    w64 = by_streams.get(64)
    if w64:
        v = w64.get("router_added_ttft_p50_ms")
        rows.append(("added TTFT p50 @64", v, "<= 1 ms", None if v is None else v <= 1.0))
        v = w64.get("router_added_ttft_p99_ms")
        rows.append(("added TTFT p99 @64", v, "<= 5 ms", None if v is None else v <= 5.0))
    for streams, w in sorted(by_streams.items()):
        r, ll = w.get("router_added_ttft_p50_ms"), w.get("litellm_added_ttft_p50_ms")
        if r is not None and ll is not None:
            ratio = round(ll / max(r, 0.001), 1)
            rows.append((f"LiteLLM/router added TTFT p50 @{streams}", ratio, ">= 10x", ratio >= 10))
        ratio = w.get("router_direct_ratio")
        if ratio is not None and streams == 256:
            rows.append(("router/direct tok/s @256 (paced)", ratio, ">= 0.95", ratio >= 0.95))
        inside = w.get("router_router_side_ttft_p50_ms")
        if inside is not None:
            rows.append((f"TTFT inside the router p50 @{streams}", inside, "engine's + ~0", None))
        if "base_added_ttft_p50_ms" in w:
            now = f"{w.get('router_added_ttft_p50_ms')} / {w.get('router_added_ttft_p99_ms')} ms"
            was = f"{w.get('base_added_ttft_p50_ms')} / {w.get('base_added_ttft_p99_ms')} ms"
            rows.append((f"added TTFT p50/p99 @{streams}: now", now, f"base {was}", None))
            cpu = f"{w.get('router_relay_cpu_us_per_token')} us"
            base_cpu = f"base {w.get('base_relay_cpu_us_per_token')} us"
            rows.append((f"router CPU per token @{streams}: now", cpu, base_cpu, None))
        g_r, g_d = w.get("router_gap_p50_ms"), w.get("direct_gap_p50_ms")
        if g_r is not None and g_d is not None:
            rows.append((f"gap p50 router/direct @{streams}", f"{g_r} / {g_d} ms", "equal", None))
    t = out.get("throughput")
    if t:
        v = t.get("router_tokens_per_s")
        rows.append(("router tok/s (ITL 0)", v, ">= 50,000", None if v is None else v >= 50_000))
        v = t.get("router_direct_ratio")
        rows.append(("router/direct tok/s (ITL 0)", v, ">= 0.95", None if v is None else v >= 0.95))
        if "base_tokens_per_s" in t:
            rows.append(("router tok/s (ITL 0): now", t.get("router_tokens_per_s"),
                         f"base {t['base_tokens_per_s']}", None))  # fmt: skip
    e = out.get("embed")
    if e:
        added = f"{e['added_p50_ms']} / {e['added_p99_ms']} ms"
        rows.append((f"Embed x{e['batch']} added p50 / p99", added, "-", None))
    s = out.get("soak")
    if s:
        rows.append((f"RSS, {s['streams']} streams", s["rss_max_mb"], "<= 300 MB",
                     None if s["rss_max_mb"] is None else s["rss_max_mb"] <= 300))  # fmt: skip
        spread = s["rss_spread_pct"]
        rows.append((f"RSS spread over {s['duration_s']:.0f}s", spread, "<= 10 %",
                     None if spread is None else spread <= 10))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    for path in (args.output, args.py_spy):
        if path is not None:  # now, not after ten minutes of measuring
            path.parent.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now().astimezone()
    machine = _machine()
    print(f"router_overhead: {started:%Y-%m-%d %H:%M %Z}, {machine}", flush=True)
    try:
        import uvloop
    except ImportError:
        out = asyncio.run(run(args))
    else:
        out = uvloop.run(run(args))
    out["machine"] = machine
    out["started_at"] = started.isoformat(timespec="seconds")
    out["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    rows = verdicts(out)
    print("\nfigure                                   value                goal        met")
    for name, value, goal, met in rows:
        mark = "-" if met is None else ("yes" if met else "NO")
        print(f"{name:<40} {value!s:<20} {goal:<11} {mark}")
    if args.output is not None:
        out["verdicts"] = rows
        args.output.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
