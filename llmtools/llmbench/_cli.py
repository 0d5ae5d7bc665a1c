"""``llm-bench``: benchmark Ollama and vLLM, directly or through the router (seed Appendix B)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llmtools.llmbench._chart import ChartUnavailableError, require_matplotlib, write_chart
from llmtools.llmbench._progress import make_progress
from llmtools.llmbench._prompts import DEFAULT_PROMPTS_NAME, Prompt, PromptFileError, load_prompts
from llmtools.llmbench._report import comparison, render_table
from llmtools.llmbench._run import run_requests
from llmtools.llmbench._stats import Summary, sample_rows, summarize
from llmtools.llmbench._targets import (
    VLLM_MODEL_NAMES,
    OllamaTarget,
    OpenAITarget,
    RouterTarget,
    Sample,
    Target,
)

DEFAULT_ROUTER = "127.0.0.1:50051"
DEFAULT_OLLAMA = "http://127.0.0.1:11434"
DEFAULT_VLLM = "http://127.0.0.1:8000"
ROUTER_ENV = ("LLM_BENCH_ROUTER", "LLMCTL_TARGET")


def _env(*names: str, default: str) -> str:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llm-bench",
        description="Benchmark Ollama and vLLM with memOS-like agentic prompts, directly over "
        "HTTP or through the router over gRPC. Reports success rate, TTFT avg/p50/p95/p99, "
        "tokens/s per request and aggregate, total tokens and errors by code.",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ollama-only", action="store_true", help="benchmark Ollama only")
    which.add_argument("--vllm-only", action="store_true", help="benchmark vLLM only")
    which.add_argument(
        "--compare", action="store_true", help="benchmark both, one after the other (default)"
    )
    p.add_argument("--runs", type=_positive, default=10, help="requests per provider (10)")
    p.add_argument("--concurrency", type=_positive, default=1, help="requests in flight (1)")
    p.add_argument(
        "--warmup",
        type=_non_negative,
        default=0,
        help="requests per provider sent before measuring, not reported (0)",
    )
    p.add_argument(
        "--prompts",
        type=Path,
        help=f"YAML or JSONL prompt file (default: the packaged {DEFAULT_PROMPTS_NAME})",
    )
    p.add_argument("--max-tokens", type=_positive, help="cap every prompt's completion length")
    p.add_argument("--output", type=Path, help="write results (summaries and samples) as JSON")
    p.add_argument("--chart", type=Path, help="write latency distributions as a PNG")
    p.add_argument(
        "--via",
        choices=("router", "direct"),
        default="router",
        help="through the router (gRPC, provider pinned) or directly to each engine (HTTP)",
    )
    p.add_argument(
        "--router",
        default=_env(*ROUTER_ENV, default=DEFAULT_ROUTER),
        help=f"router HOST:PORT (${ROUTER_ENV[0]}, ${ROUTER_ENV[1]}, default {DEFAULT_ROUTER})",
    )
    p.add_argument(
        "--ollama-url",
        default=_env("OLLAMA_BASE_URL", default=DEFAULT_OLLAMA),
        help=f"Ollama base URL for --via direct ($OLLAMA_BASE_URL, default {DEFAULT_OLLAMA})",
    )
    p.add_argument(
        "--vllm-url",
        default=_env("VLLM_BASE_URL", default=DEFAULT_VLLM),
        help=f"vLLM base URL for --via direct ($VLLM_BASE_URL, default {DEFAULT_VLLM})",
    )
    p.add_argument("--model", default="qwen3:8b", help="logical (Ollama) model name (qwen3:8b)")
    p.add_argument(
        "--vllm-model", help="vLLM's name for it (default: the catalogue's, e.g. Qwen/Qwen3-8B)"
    )
    p.add_argument(
        "--timeout", type=float, default=600.0, help="deadline of each request, seconds (600)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


@dataclass(frozen=True, slots=True)
class _Plan:
    provider: str
    address: str


def _plans(args: argparse.Namespace) -> list[_Plan]:
    providers = (
        ["ollama"] if args.ollama_only else ["vllm"] if args.vllm_only else ["ollama", "vllm"]
    )
    if args.via == "router":
        return [_Plan(p, args.router) for p in providers]
    return [_Plan(p, args.ollama_url if p == "ollama" else args.vllm_url) for p in providers]


def _target(args: argparse.Namespace, plan: _Plan) -> Target:
    if args.via == "router":
        return RouterTarget(
            plan.address, plan.provider, args.model, timeout_s=args.timeout, record_arrivals=True
        )
    if plan.provider == "ollama":
        return OllamaTarget(plan.address, args.model, timeout_s=args.timeout, record_arrivals=True)
    vllm_model = args.vllm_model or VLLM_MODEL_NAMES.get(args.model, args.model)
    return OpenAITarget(plan.address, vllm_model, timeout_s=args.timeout, record_arrivals=True)


async def _bench_one(
    args: argparse.Namespace, plan: _Plan, prompts: Sequence[Prompt]
) -> tuple[Summary, list[Sample]]:
    target = _target(args, plan)
    try:
        if args.warmup:
            await run_requests(target, prompts, args.warmup, args.concurrency)
        progress = make_progress(
            f"{plan.provider} via {args.via}", args.runs, enabled=not args.no_progress
        )
        try:
            batch = await run_requests(target, prompts, args.runs, args.concurrency, progress)
        finally:
            progress.close()
    finally:
        await target.aclose()
    return summarize(plan.provider, batch.samples, batch.wall_s), batch.samples


def _document(
    args: argparse.Namespace,
    plans: Sequence[_Plan],
    prompts: Sequence[Prompt],
    results: Sequence[tuple[Summary, list[Sample]]],
    started: dt.datetime,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tool": "llm-bench",
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "via": args.via,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "model": args.model,
        "prompts": {
            "file": str(args.prompts) if args.prompts else DEFAULT_PROMPTS_NAME,
            "count": len(prompts),
        },
        "targets": {p.provider: p.address for p in plans},
        "results": {
            summary.label: {**summary.to_json(), "samples": sample_rows(samples)}
            for summary, samples in results
        },
    }
    if len(results) == 2:
        doc["comparison"] = comparison(results[0][0], results[1][0])
    return doc


def _make_parents(*paths: Path | None) -> None:
    """Before the run, not after it: a missing folder must not cost the results."""
    for path in paths:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


async def run(args: argparse.Namespace) -> int:
    try:
        prompts = load_prompts(args.prompts, args.max_tokens)
        if args.chart is not None:
            require_matplotlib()
        _make_parents(args.output, args.chart)
    except (PromptFileError, ChartUnavailableError, OSError) as exc:
        print(f"llm-bench: {exc}", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.UTC)
    plans = _plans(args)
    results = [await _bench_one(args, plan, prompts) for plan in plans]
    title = (
        f"llm-bench via {args.via}: {args.runs} requests per provider, concurrency "
        f"{args.concurrency}, model {args.model}, {len(prompts)} prompts"
    )
    print(render_table([s for s, _ in results], title))
    if args.output is not None:
        doc = _document(args, plans, prompts, results, started)
        _write(args.output, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"results written to {args.output}")
    if args.chart is not None:
        write_chart({s.label: samples for s, samples in results}, args.chart, title)
        print(f"chart written to {args.chart}")
    return 1 if any(s.succeeded == 0 for s, _ in results) else 0


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        import uvloop
    except ImportError:
        code = asyncio.run(run(args))
    else:
        code = uvloop.run(run(args))
    sys.exit(code)
