"""``llm-bench``: benchmark Ollama and vLLM with memOS-like prompts, directly or via the router.

The seed report's Appendix B made real::

    llm-bench --ollama-only --runs 10
    llm-bench --vllm-only --runs 10
    llm-bench --compare --runs 10 --concurrency 50 --output results.json --chart latency.png

``--via router`` (default) goes through the router over gRPC with the provider pinned;
``--via direct`` talks to each engine's own HTTP API. See docs/performance.md.

The building blocks are public so benchmarks (``bench/router_overhead.py``) reuse the same
timed load path.
"""

from llmcore.stats import percentile
from llmtools.llmbench._cli import build_parser, main, run
from llmtools.llmbench._prompts import Prompt, PromptFileError, load_prompts
from llmtools.llmbench._run import Batch, Window, run_requests, run_window
from llmtools.llmbench._stats import Summary, summarize
from llmtools.llmbench._targets import (
    VLLM_MODEL_NAMES,
    OllamaTarget,
    OpenAITarget,
    RouterTarget,
    Sample,
    Target,
)

__all__ = [
    "VLLM_MODEL_NAMES",
    "Batch",
    "OllamaTarget",
    "OpenAITarget",
    "Prompt",
    "PromptFileError",
    "RouterTarget",
    "Sample",
    "Summary",
    "Target",
    "Window",
    "build_parser",
    "load_prompts",
    "main",
    "percentile",
    "run",
    "run_requests",
    "run_window",
    "summarize",
]
