"""Runs the LLM judge on completed shadow pairs (the rules are in ``_judge``): decides whether a
pair is judged (enabled, sampled, not the judge's own model, a free slot, budget left), asks the
judge model through the mirror's own single-attempt Dispatcher, maps the verdict back.

Judge calls are not memOS traffic: they are recorded in no request stats (the shadow error rate
and the rollback rules never see them), only in ``JudgeCounters`` and in each pair's verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable

from llmcore.features import ResponseFormat
from router_service.config.routing import RoutingConfig
from router_service.dispatch import ChatIntent, Dispatcher, Text
from router_service.errors import RouterError
from router_service.placement import Candidate
from router_service.shadow._judge import (
    DEFAULT_PROMPT,
    MAX_CONCURRENCY,
    VERDICT_SCHEMA,
    Budget,
    JudgeCounters,
    Outcome,
    Plan,
    Verdict,
    outcome,
    parse_verdict,
    plan,
    render,
)
from router_service.shadow._sample import sampled
from router_service.shadow._semantic import Bounded
from router_service.values import ChatMessage, Features, SamplingOptions

log = logging.getLogger(__name__)

JUDGE_ID_SUFFIX = "-shadow-judge"
JUDGE_FEATURES = Features(
    response_format=ResponseFormat(
        kind="json_schema",
        name="verdict",
        schema=json.dumps(VERDICT_SCHEMA, sort_keys=True, separators=(",", ":")),
        strict=True,
        given=True,
    )
)
# Enough for {"verdict": ..., "reason": "<one sentence>"}.
JUDGE_MAX_TOKENS = 128


class PairJudge:
    def __init__(
        self,
        dispatcher: Dispatcher,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dispatcher = dispatcher
        # Injectable so tests can pin the order; one generator for every pair of this router.
        self.rng = rng or random.Random()
        self._budget = Budget(clock)
        self._bound = Bounded()
        self.counters = JudgeCounters()

    def begin(self, cfg: RoutingConfig, model: str, request_id: str) -> Plan | None:
        """Whether this pair is judged, and how; None: not judged (counted when refused)."""
        j = cfg.judge
        if not j.enabled or not sampled(request_id + "/judge", j.sample_rate):
            return None
        if model == j.model:  # refused at config time; a request naming it is skipped here
            self.counters.judge_is_arm += 1
            return None
        p = plan(self.rng, j.swap_check_rate)
        if self._bound.in_flight >= MAX_CONCURRENCY:
            self.counters.busy += 1
            return None
        if not self._budget.take(j.max_calls_per_hour, 2 if p.swap_check else 1):
            self.counters.over_budget += 1
            return None
        self._bound.admit(MAX_CONCURRENCY, 0)
        return p

    async def judge(
        self,
        cfg: RoutingConfig,
        p: Plan,
        request_id: str,
        question: str,
        primary: str,
        shadow: str,
    ) -> tuple[Outcome, bool | None]:
        """The verdict from the shadow's side, and (swap check) whether the swapped verdict
        agreed."""

        async def run() -> tuple[Outcome, bool | None]:
            first = await self._ask(cfg, request_id, question, primary, shadow, p.shadow_is_a)
            got = outcome(first, p.shadow_is_a)
            agreed: bool | None = None
            if p.swap_check and first is not None:
                second = await self._ask(
                    cfg, request_id, question, primary, shadow, not p.shadow_is_a
                )
                swapped = outcome(second, not p.shadow_is_a)
                agreed = None if swapped == "unjudged" else swapped == got
            if got == "unjudged":
                self.counters.unjudged += 1
            else:
                self.counters.judged += 1
            return got, agreed

        return await self._bound.run(MAX_CONCURRENCY, run)

    async def _ask(
        self,
        cfg: RoutingConfig,
        request_id: str,
        question: str,
        primary: str,
        shadow: str,
        shadow_is_a: bool,
    ) -> Verdict | None:
        j = cfg.judge
        assert j.provider is not None  # enabled: the config says which engine
        engine_model = cfg.catalog.engine_name(j.model, j.provider)
        if engine_model is None:  # pragma: no cover - from_snapshot refuses such a config
            return None
        a, b = (shadow, primary) if shadow_is_a else (primary, shadow)
        intent = ChatIntent(
            request_id + JUDGE_ID_SUFFIX,
            (ChatMessage("user", render(j.prompt or DEFAULT_PROMPT, question, a, b)),),
            # Greedy: the same pair in the same order gets the same verdict; the swap check
            # then measures order bias, not sampling noise.
            SamplingOptions(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0),
            # The engine constrains the answer to the verdict schema (structured output); the
            # answer is still parsed strictly, and anything else counts as unjudged.
            features=JUDGE_FEATURES,
        )
        cand = Candidate(j.provider, j.model, engine_model, fallback=False)
        deadline = asyncio.get_running_loop().time() + j.timeout_s
        parts: list[str] = []
        self.counters.calls += 1
        events = self._dispatcher.generate(intent, [cand], deadline, {})
        try:
            async with contextlib.aclosing(events):
                async for ev in events:
                    if isinstance(ev, Text):
                        parts.append(ev.text)
        except RouterError as err:
            # The kind only: prompts and answers never reach a log.
            log.debug("shadow judge call failed (request_id=%s): %s", request_id, err.kind.value)
            return None
        return parse_verdict("".join(parts))
