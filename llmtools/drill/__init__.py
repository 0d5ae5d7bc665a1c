"""The migration drill (``make demo``): walks the seed's plan on a running stack with a memOS-like
load, injects vLLM faults and checks the rollback, the fallback and the split shares.
See docs/demo.md."""

from llmtools.drill._load import CALL_MIX, CALLS_PER_QUERY, Call, Load
from llmtools.drill._plan import run_drill
from llmtools.drill._results import DrillConfig, DrillResult, DrillTargets, summary_lines

__all__ = [
    "CALLS_PER_QUERY",
    "CALL_MIX",
    "Call",
    "DrillConfig",
    "DrillResult",
    "DrillTargets",
    "Load",
    "run_drill",
    "summary_lines",
]
