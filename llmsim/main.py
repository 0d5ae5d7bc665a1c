"""``llm-sim``: run one simulator until SIGTERM/SIGINT.

    llm-sim --flavor ollama --port 11434 --profile titan-ollama
    llm-sim --flavor vllm --port 8000 --max-num-seqs 64 --itl-ms 0 --disconnect-after-tokens 5

Environment (flags win): OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, as Ollama reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from llmsim._config import PROFILES, Flavor, ModelSpec, SimConfig
from llmsim._faults import Faults
from llmsim._server import start_simulator

__all__ = ["build_config", "main", "parse_args"]

_log = logging.getLogger("llmsim")
_DEFAULT_PORT = {Flavor.OLLAMA: 11434, Flavor.VLLM: 8000}


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"llm-sim: {name} must be an integer, got {raw!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="llm-sim", description="Ollama / vLLM backend simulator (no GPU needed)."
    )
    p.add_argument("--flavor", choices=[f.value for f in Flavor], default="ollama")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="default 11434 (ollama) / 8000 (vllm); 0 = any")
    p.add_argument("--profile", choices=sorted(PROFILES), help="default: test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-parallel", type=int, help="Ollama slots per model (OLLAMA_NUM_PARALLEL)")
    p.add_argument("--max-queue", type=int, help="Ollama queue limit (OLLAMA_MAX_QUEUE, 512)")
    p.add_argument("--max-num-seqs", type=int, default=256, help="vLLM batch size")
    p.add_argument("--models", help="comma-separated generate model names (replace catalogue)")
    p.add_argument(
        "--embedding-models", help="comma-separated NAME=DIM embedding models (with --models)"
    )
    t = p.add_argument_group("timing overrides (milliseconds)")
    t.add_argument("--ttft-ms", type=float)
    t.add_argument("--prompt-token-ms", type=float)
    t.add_argument("--itl-ms", type=float)
    t.add_argument("--jitter", type=float, help="fraction, 0..1")
    t.add_argument("--load-factor", type=float)
    t.add_argument("--completion-tokens", type=int)
    t.add_argument("--load-ms", type=float)
    f = p.add_argument_group("faults (also settable at run time: PUT /sim/faults)")
    f.add_argument("--error-rate", type=float, default=0.0)
    f.add_argument("--error-status", type=int, default=500)
    f.add_argument("--added-latency-ms", type=float, default=0.0)
    f.add_argument("--slow-first-token-ms", type=float, default=0.0)
    f.add_argument("--stall-after-tokens", type=int)
    f.add_argument("--disconnect-after-tokens", type=int)
    f.add_argument("--malformed-after-tokens", type=int)
    f.add_argument("--midstream-error-after-tokens", type=int)
    f.add_argument("--health-failing", action="store_true")
    f.add_argument("--refuse-connections", action="store_true")
    f.add_argument("--refuse-connections-ms", type=float, default=0.0)
    f.add_argument(
        "--unrelated-answers",
        action="store_true",
        help="with --answer-mode concepts: answers mean something else (a plausible wrong engine)",
    )
    m = p.add_argument_group("meaning (docs/simulator.md)")
    m.add_argument(
        "--answer-mode",
        choices=["words", "concepts"],
        default="words",
        help="words: seeded word salad; concepts: the prompt's meaning in this engine's words",
    )
    m.add_argument(
        "--embedding-mode",
        choices=["hash", "concepts"],
        default="hash",
        help="hash: no meaning; concepts: bag-of-concepts vectors that reflect meaning",
    )
    m.add_argument(
        "--embedding-skew",
        type=float,
        default=0.0,
        help="with --embedding-mode concepts: 0..1 of an engine-specific vector mixed in",
    )
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _models(args: argparse.Namespace) -> list[ModelSpec] | None:
    if not args.models and not args.embedding_models:
        return None
    out = [ModelSpec(name=n.strip()) for n in (args.models or "").split(",") if n.strip()]
    for item in (args.embedding_models or "").split(","):
        if item.strip():
            name, _, dim = item.partition("=")
            out.append(
                ModelSpec(
                    name=name.strip(),
                    kind="embedding",
                    embedding_dim=int(dim or 1024),
                    capabilities=("embedding",),
                )
            )
    return out


def build_config(args: argparse.Namespace) -> SimConfig:
    flavor = Flavor(args.flavor)
    max_queue = args.max_queue if args.max_queue is not None else _env_int("OLLAMA_MAX_QUEUE")
    num_parallel = (
        args.num_parallel if args.num_parallel is not None else _env_int("OLLAMA_NUM_PARALLEL")
    )
    faults = Faults(
        error_rate=args.error_rate,
        error_status=args.error_status,
        added_latency_ms=args.added_latency_ms,
        slow_first_token_ms=args.slow_first_token_ms,
        stall_after_tokens=args.stall_after_tokens,
        disconnect_after_tokens=args.disconnect_after_tokens,
        malformed_after_tokens=args.malformed_after_tokens,
        midstream_error_after_tokens=args.midstream_error_after_tokens,
        health_failing=args.health_failing,
        refuse_connections=args.refuse_connections,
        refuse_connections_ms=args.refuse_connections_ms,
        unrelated_answers=args.unrelated_answers,
    )
    kwargs: dict[str, Any] = {
        "flavor": flavor,
        "host": args.host,
        "port": args.port if args.port is not None else _DEFAULT_PORT[flavor],
        "seed": args.seed,
        "models": _models(args),
        "num_parallel": num_parallel,
        "max_num_seqs": args.max_num_seqs,
        "ttft_ms": args.ttft_ms,
        "prompt_token_ms": args.prompt_token_ms,
        "itl_ms": args.itl_ms,
        "jitter": args.jitter,
        "load_factor": args.load_factor,
        "completion_tokens": args.completion_tokens,
        "load_ms": args.load_ms,
        "faults": faults,
        "answer_mode": args.answer_mode,
        "embedding_mode": args.embedding_mode,
        "embedding_skew": args.embedding_skew,
    }
    if args.profile is not None:
        kwargs["profile"] = args.profile
    if max_queue is not None:
        kwargs["max_queue"] = max_queue
    return SimConfig(**kwargs)


async def serve(config: SimConfig) -> None:
    sim = await start_simulator(config)
    timing = sim.context.timing
    _log.info(
        "llm-sim %s listening on %s profile=%s models=%d %s itl_ms=%g ttft_ms=%g",
        config.flavor.value,
        sim.base_url,
        config.profile,
        len(sim.context.engines),
        f"num_parallel={timing.num_parallel} max_queue={config.max_queue}"
        if config.flavor is Flavor.OLLAMA
        else f"max_num_seqs={config.max_num_seqs}",
        timing.itl_ms,
        timing.ttft_ms,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await sim.stop()
        _log.info("llm-sim stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    config = build_config(args)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))


if __name__ == "__main__":
    main()
