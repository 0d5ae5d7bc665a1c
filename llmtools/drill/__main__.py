"""``make demo`` / ``python -m llmtools.drill``: start the stack on the simulators (one process
each) and run the migration drill against it; exit 1 when an expectation fails.
``--control`` and ``--router`` drill a stack that is already running instead (it needs the
simulators' admin API: ``--ollama-url`` / ``--vllm-url``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from llmtools.drill._plan import run_drill
from llmtools.drill._results import DrillConfig, DrillTargets
from llmtools.drill._stack import process_stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llmtools.drill",
        description="Migration drill: FACADE -> SHADOW -> SPLIT 10/30/70 -> fault and automatic "
        "rollback -> retry -> go/no-go -> PRIMARY -> vLLM outage, under a memOS-like load.",
    )
    p.add_argument("--concurrency", type=int, default=8, help="queries in flight (default 8)")
    p.add_argument("--dwell", type=float, default=8.0, help="seconds per SPLIT/PRIMARY step")
    p.add_argument("--short-dwell", type=float, default=4.0, help="seconds per other step")
    p.add_argument("--outage", type=float, default=5.0, help="seconds of vLLM outage")
    p.add_argument(
        "--rollback-within", type=float, default=5.0, help="expected rollback time, seconds"
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="print one query's request id (and trace id when OTEL_EXPORTER_OTLP_ENDPOINT is set)",
    )
    p.add_argument("--no-live", action="store_true", help="line output even on a terminal")
    p.add_argument(
        "--no-meaning",
        action="store_true",
        help="skip the meaning step (a running stack whose simulators are not started with "
        "--answer-mode concepts --embedding-mode concepts)",
    )
    p.add_argument("--control", help="drill a running stack: control service HOST:PORT")
    p.add_argument("--router", action="append", help="... its router(s) HOST:PORT")
    p.add_argument("--ollama-url", default="http://127.0.0.1:11434")
    p.add_argument("--vllm-url", default="http://127.0.0.1:8000")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = DrillConfig(
        concurrency=args.concurrency,
        dwell_s=args.dwell,
        short_dwell_s=args.short_dwell,
        outage_s=args.outage,
        rollback_within_s=args.rollback_within,
        trace=args.trace,
        live=False if args.no_live else None,
        meaning=not args.no_meaning,
    )
    if args.control:
        targets = DrillTargets(
            routers=args.router or ["127.0.0.1:50051"],
            control=args.control,
            ollama_url=args.ollama_url,
            vllm_url=args.vllm_url,
        )
        result = asyncio.run(run_drill(targets, config))
        return 0 if result.ok else 1
    with process_stack() as (targets, root):
        print(f"drill: stack started (logs and state in {root})", flush=True)
        result = asyncio.run(run_drill(targets, config))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
