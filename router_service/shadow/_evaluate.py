"""What happens to a completed shadow pair before it is recorded: the cheap figures at once
(lexical similarity, length ratio, JSON field agreement), then, off the mirror's path and each
under its own bounds, the semantic similarity (``_semantic``) and the LLM judge (``_judge``).

A pair that needs neither is recorded at once; otherwise the mirror runs the returned coroutine
in a task and records the pair when it ends. Either scorer refusing (sample, bounds, budget) or
failing leaves its figure empty and counts why; the pair is recorded regardless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from router_service.config.routing import RoutingConfig
from router_service.dispatch import Dispatcher
from router_service.errors import ErrorKind, RouterError
from router_service.placement import choose_provider, plan
from router_service.shadow._compare import TextFigures, compare_texts, cosine
from router_service.shadow._judge import Outcome, Plan
from router_service.shadow._judging import PairJudge
from router_service.shadow._sample import sampled
from router_service.shadow._semantic import Bounded, JsonFigures, answer_text, json_figures

log = logging.getLogger(__name__)

EMBED_ID_SUFFIX = "-shadow-embed"


@dataclass(slots=True)
class Scored:
    """A completed pair's figures, filled as the scorers finish."""

    figures: TextFigures
    json: JsonFigures | None = None
    semantic: float | None = None
    semantic_dropped: bool = False
    judge: Outcome | None = None  # None: not sent to the judge
    judge_swap_agreed: bool | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    """What the evaluation needs of a completed pair (texts stay in memory, never logged)."""

    cfg: RoutingConfig
    request_id: str
    routing_key: str
    model: str
    question: str
    primary_text: str
    shadow_text: str
    both_ok: bool


class PairEvaluator:
    def __init__(
        self,
        dispatcher: Dispatcher,
        skip: Callable[[str], None],
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dispatcher = dispatcher
        self._skip = skip  # counts a reason in the mirror's counters
        self.semantic = Bounded()  # the semantic scorer's own bounds
        self.judge = PairJudge(dispatcher, rng, clock)

    def prepare(self, p: Pair) -> tuple[Scored, Coroutine[Any, Any, None] | None]:
        """The pair's figures, and the work still to do (None: record now)."""
        if not p.both_ok:
            return Scored(TextFigures(0.0, 0.0)), None
        a, b = answer_text(p.primary_text), answer_text(p.shadow_text)  # answers, no reasoning
        pair = Scored(compare_texts(p.primary_text, p.shadow_text), json_figures(a, b))
        sem = p.cfg.semantic
        texts: tuple[str, str] | None = None
        if (
            p.cfg.shadow_compare_embeddings
            and a
            and b
            and sampled(p.request_id + "/semantic", sem.sample_rate)
        ):
            if self.semantic.admit(sem.max_concurrency, sem.queue_size):
                texts = (a, b) if pair.json is None else pair.json.canonical
            else:
                self._skip("semantic_dropped")
                pair.semantic_dropped = True
        verdict = self.judge.begin(p.cfg, p.model, p.request_id) if a and b else None
        if texts is None and verdict is None:
            return pair, None
        return pair, self._run(p, pair, texts, verdict, (a, b))

    async def _run(
        self,
        p: Pair,
        pair: Scored,
        texts: tuple[str, str] | None,
        verdict: Plan | None,
        answers: tuple[str, str],
    ) -> None:
        if texts is not None:
            sem = p.cfg.semantic
            pair.semantic = await self.semantic.run(
                sem.max_concurrency, lambda: self._cosine(p, texts)
            )
            pair.semantic_dropped = pair.semantic is None
        if verdict is not None:
            pair.judge, pair.judge_swap_agreed = await self.judge.judge(
                p.cfg, verdict, p.request_id, p.question, *answers
            )

    async def _cosine(self, p: Pair, texts: tuple[str, str]) -> float | None:
        """Both answers through the router's own Embed path, in one call pinned to one engine
        (no fallback), so both vectors come from the same model on the same engine
        (``flags.shadow_semantic``), under the scorer's own deadline."""
        sem, cfg = p.cfg.semantic, p.cfg
        deadline = asyncio.get_running_loop().time() + sem.timeout_s
        try:
            engine = sem.provider or choose_provider(cfg, "embedding", p.routing_key)
            candidates = plan(cfg, "embedding", sem.model, engine, p.routing_key)
            _, out = await self._dispatcher.embed(
                p.request_id + EMBED_ID_SUFFIX, texts, candidates, deadline
            )
            return cosine(out.vectors[0], out.vectors[1])
        except (RouterError, ValueError, IndexError) as exc:
            # The kind only: the texts must never reach a log.
            kind = exc.kind.value if isinstance(exc, RouterError) else type(exc).__name__
            log.debug("shadow semantic scoring failed (request_id=%s): %s", p.request_id, kind)
            if isinstance(exc, RouterError) and exc.kind is ErrorKind.LLM_TIMEOUT:
                self.semantic.counters.timed_out += 1
            else:
                self.semantic.counters.failed += 1
            self._skip("semantic_failed")
            return None
