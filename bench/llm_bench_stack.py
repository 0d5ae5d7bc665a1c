"""Run ``llm-bench`` against a throw-away stack: both simulators with one timing profile, and a
router in front of them, on free loopback ports; everything is stopped at the end.

    .venv/bin/python -m bench.llm_bench_stack --profile titan -- --compare --runs 100 \\
        --concurrency 50 --output .run/titan-compare.json --chart .run/titan-compare.png
    .venv/bin/python -m bench.llm_bench_stack --profile test -- --compare --via direct

``--profile titan`` gives the Ollama simulator ``titan-ollama`` and the vLLM one ``titan-vllm``
(docs/simulator.md: the TITAN RTX timing model behind the seed report's figures). Everything
after ``--`` goes to ``llm-bench``; the router and engine addresses are filled in.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench._procs import Procs
from llmtools.llmbench import build_parser, run


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ours, theirs = argv, []
    if "--" in argv:
        cut = argv.index("--")
        ours, theirs = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profile", choices=("titan", "test"), default="titan")
    p.add_argument("--sim-args", default="", help="extra llm-sim flags for both simulators")
    args = p.parse_args(ours)
    ollama_profile = "titan-ollama" if args.profile == "titan" else "test"
    vllm_profile = "titan-vllm" if args.profile == "titan" else "test"
    extra = args.sim_args.split()
    with Procs() as procs:
        ollama = procs.simulator("ollama", None, ["--profile", ollama_profile, *extra])
        vllm = procs.simulator("vllm", None, ["--profile", vllm_profile, *extra])
        router = procs.router(
            None,
            ollama_url=ollama.address,
            vllm_url=vllm.address,
            # Long queues (titan-ollama serves 4 at a time) must not hit the router's bounds.
            env={
                "LLM_ROUTER_READ_TIMEOUT_S": "600",
                "LLM_ROUTER_DEFAULT_DEADLINE_S": "1800",
                "LLM_ROUTER_RETRY_ATTEMPTS": "1",
            },
        )
        print(
            f"stack: ollama {ollama.address} ({ollama_profile}), vllm {vllm.address} "
            f"({vllm_profile}), router {router.address}",
            flush=True,
        )
        bench_args = build_parser().parse_args(
            [
                *theirs,
                "--router", router.address,
                "--ollama-url", ollama.address,
                "--vllm-url", vllm.address,
            ]
        )  # fmt: skip
        try:
            import uvloop
        except ImportError:
            code = asyncio.run(run(bench_args))
        else:
            code = uvloop.run(run(bench_args))
    sys.exit(code)


if __name__ == "__main__":
    main()
