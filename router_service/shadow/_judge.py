"""An optional LLM judge for shadow pairs: which answer is better, blind, on a sample, within a
budget (issue 16).

Fairness rules, each enforced here or at config time:

* **Blind.** The judge sees "Answer A" and "Answer B", never an engine or model name.
* **Order randomised per pair.** Position bias is the best-known flaw of LLM judges (they
  favour the first answer); a seeded ``random.Random`` (injectable, so tests can pin it) decides
  per pair whether A is the primary's answer or the shadow's. The verdict is mapped back.
* **Noise measured.** A share of judged pairs (``swap_check_rate``) is judged again with the
  order swapped; the share of those whose two verdicts agree (after mapping back) is the judge's
  self-agreement, reported next to its wins and losses: a judge that flips with the order is
  noise, and the gate says so.
* **Constrained verdict.** The judge must answer exactly the JSON object of ``VERDICT_SCHEMA``:
  the call asks the engine for structured output with that schema (``response_format``
  json_schema, strict), and the answer is still parsed strictly (a Markdown fence allowed,
  nothing else): anything else counts the pair as *unjudged*, never as a guess.
* **Not an arm.** The judge model may not be a model the pairs compare (refused at config time,
  ``flags.shadow_judge.model``; a pair of the judge's own model is skipped here too).
* **Bounded.** ``max_calls_per_hour`` per router (a sliding hour; every call counts, swap checks
  included), its own ``timeout``, at most ``MAX_CONCURRENCY`` calls at once; beyond: skipped and
  counted, never queued for later.

Why in the router, after the pair completes: the router holds both answers (they never leave it
unless an operator opts into content capture), it has the Dispatcher to call the judge model, and
verdicts travel with the pair in the stats report like every other figure. A control-service
judge would need every answer text shipped to it.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["A", "B", "tie"]
Outcome = Literal["shadow_better", "tie", "primary_better", "unjudged"]

MAX_CONCURRENCY = 2
MAX_ANSWER_CHARS = 4000  # each answer is cut to this in the prompt (bounded judge cost)
HOUR_S = 3600.0

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["A", "B", "tie"]},
        "reason": {"type": "string"},
    },
    "required": ["verdict"],
    "additionalProperties": False,
}

DEFAULT_PROMPT = """You are judging two answers to the same question. Judge only which answer is
more correct, complete and useful for the question; ignore length and style.

Question:
{question}

Answer A:
{answer_a}

Answer B:
{answer_b}

Reply with only this JSON object and nothing else:
{{"verdict": "A" | "B" | "tie", "reason": "<one sentence>"}}"""

_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL)


def parse_verdict(text: str) -> Verdict | None:
    """The verdict of a judge's answer that is exactly the schema's JSON object; None for
    anything else (prose, extra keys, another value)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) - {"verdict", "reason"}:
        return None
    if "reason" in value and not isinstance(value["reason"], str):
        return None
    verdict = value.get("verdict")
    if verdict in ("A", "B", "tie"):
        return verdict  # type: ignore[no-any-return]
    return None


def render(template: str, question: str, answer_a: str, answer_b: str) -> str:
    """The judge's prompt (``str.format`` fields: question, answer_a, answer_b)."""
    return template.format(
        question=question[:MAX_ANSWER_CHARS],
        answer_a=answer_a[:MAX_ANSWER_CHARS],
        answer_b=answer_b[:MAX_ANSWER_CHARS],
    )


def outcome(verdict: Verdict | None, shadow_is_a: bool) -> Outcome:
    """The verdict from the shadow engine's side."""
    if verdict is None:
        return "unjudged"
    if verdict == "tie":
        return "tie"
    return "shadow_better" if (verdict == "A") == shadow_is_a else "primary_better"


@dataclass(slots=True)
class JudgeCounters:
    calls: int = 0
    judged: int = 0
    unjudged: int = 0  # no parseable verdict (or the call failed or timed out)
    over_budget: int = 0
    busy: int = 0
    judge_is_arm: int = 0


class Budget:
    """At most ``limit`` calls in any sliding hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: deque[float] = deque()

    def take(self, limit: int, n: int = 1) -> bool:
        """Spend ``n`` calls if they fit in the last hour's budget."""
        now = self._clock()
        while self._calls and self._calls[0] <= now - HOUR_S:
            self._calls.popleft()
        if len(self._calls) + n > limit:
            return False
        self._calls.extend([now] * n)
        return True


@dataclass(frozen=True, slots=True)
class Plan:
    """What one pair's judging does: the order, and whether it is judged twice."""

    shadow_is_a: bool
    swap_check: bool


def plan(rng: random.Random, swap_check_rate: float) -> Plan:
    return Plan(rng.random() < 0.5, rng.random() < swap_check_rate)
