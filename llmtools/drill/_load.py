"""A memOS-like load: each query is the seed's call mix (section 1.3) through the router, every
call of one query sharing its request id and routing key, a bounded number of queries at once.

The calls are memOS's real shapes (docs/agentic.md): classification and retrieval evaluation
answer a JSON Schema, verification a JSON object, the first analysis call thinks (reasoning low)
and the second may call the ``search_memory`` tool; so the shadow report has JSON validity,
tool-call agreement and reasoning-length figures to show.

Each call is recorded under the drill step current when the call *started* (the drill switches
the step to ``TRANSITION`` while a change propagates, so a step only counts calls the routers
placed under its config).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.llm import (
    CallOptions,
    ReasoningLevel,
    ResponseFormat,
    RouterClient,
    RouterError,
    Task,
    Tool,
)
from llmcore.stats import percentile

TRANSITION = "transition"

# (task, how many calls of it run together); in pipeline order. Seed 1.3: classification,
# analysis x2, retrieval evaluation, synthesis, reflection x2 (ISREL/ISSUP), verification; plus
# the retrieval's embedding call.
CALL_MIX: tuple[tuple[Task, int], ...] = (
    (Task.EMBEDDING, 1),
    (Task.CLASSIFICATION, 1),
    (Task.ANALYSIS, 2),
    (Task.RETRIEVAL_EVALUATION, 1),
    (Task.SYNTHESIS, 1),
    (Task.REFLECTION, 2),
    (Task.VERIFICATION, 1),
)
CALLS_PER_QUERY = sum(n for _, n in CALL_MIX)

_PROMPTS: dict[Task, str] = {
    Task.CLASSIFICATION: "Classify this query for routing: {q}",
    Task.ANALYSIS: "Decompose the query into sub-questions and a plan: {q}",
    Task.RETRIEVAL_EVALUATION: "Are the retrieved passages relevant and sufficient for: {q}",
    Task.SYNTHESIS: "Write the answer from the evidence for: {q}",
    Task.REFLECTION: "Is the answer relevant (ISREL) and supported (ISSUP) for: {q}",
    Task.VERIFICATION: "Verify each claim of the answer to: {q}",
}
_CLASSES = ["factual", "analytical", "procedural", "comparative"]
_CLASSIFY = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": _CLASSES},
        "needs_retrieval": {"type": "boolean"},
    },
    "required": ["category", "needs_retrieval"],
    "additionalProperties": False,
}
_RELEVANCE = {
    "type": "object",
    "properties": {
        "relevant": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["relevant", "score"],
    "additionalProperties": False,
}
SEARCH_TOOL = Tool(
    "search_memory",
    "Search memOS's memory graph for passages about a query",
    {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "maximum": 10}},
        "required": ["query"],
    },
)
# Extra generate arguments per (task, index of the call among that task's calls), and room for
# the answer: JSON must not be cut by the token limit, thinking needs its own tokens.
_FEATURES: dict[tuple[Task, int], dict[str, Any]] = {
    (Task.CLASSIFICATION, 0): {
        "reasoning": ReasoningLevel.OFF,
        "response_format": ResponseFormat.schema("query_class", _CLASSIFY, strict=True),
        "max_tokens": 64,
    },
    (Task.ANALYSIS, 0): {"reasoning": ReasoningLevel.LOW, "max_tokens": 48},
    (Task.ANALYSIS, 1): {"tools": [SEARCH_TOOL], "reasoning": ReasoningLevel.OFF},
    (Task.RETRIEVAL_EVALUATION, 0): {
        "response_format": ResponseFormat.schema("relevance", _RELEVANCE, strict=True),
        "max_tokens": 64,
    },
    (Task.VERIFICATION, 0): {"response_format": ResponseFormat.json_object(), "max_tokens": 64},
}
_TOOL_PROMPT = "Use search_memory to find what memOS already knows, then plan: {q}"
_QUESTIONS = (
    "how does PagedAttention reduce KV cache fragmentation",
    "compare continuous batching with static batching",
    "what limits TITAN RTX throughput for an 8B model",
    "when should a migration roll back automatically",
)


@dataclass(frozen=True, slots=True)
class Call:
    """One call's outcome."""

    step: str
    query: int
    task: Task
    started: float
    provider: str  # "ollama" | "vllm" | "error"
    fallback: bool = False
    ttft_ms: float = 0.0
    error: str = ""


def p95(values: Sequence[float]) -> float | None:
    """95th percentile (:func:`llmcore.stats.percentile`); None for no values."""
    return percentile(values, 95)


@dataclass
class Load:
    """The load generator. ``step`` is the label new calls are recorded under."""

    clients: Sequence[RouterClient]
    concurrency: int = 8
    max_tokens: int = 12
    run_id: str = "drill"
    timeout_s: float = 10.0
    step: str = TRANSITION
    calls: list[Call] = field(default_factory=list)
    queries_started: int = 0
    # query index -> traceparent metadata for the one traced query (--trace).
    traced: dict[int, str] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._worker()))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

    def request_id(self, query: int) -> str:
        return f"{self.run_id}-q{query:05d}"

    @staticmethod
    def routing_key(query: int) -> str:
        # Deterministic: the same query number lands in the same split bucket on every run.
        return f"memos-q{query:05d}"

    async def _worker(self) -> None:
        while not self._stop.is_set():
            query = self.queries_started
            self.queries_started += 1
            await self._query(query)

    async def _query(self, query: int) -> None:
        client = self.clients[query % len(self.clients)]
        question = _QUESTIONS[query % len(_QUESTIONS)]
        meta: tuple[tuple[str, str], ...] = ()
        if query in self.traced:
            meta = (("traceparent", self.traced[query]),)
        options = CallOptions(timeout=self.timeout_s, metadata=meta)
        for task, n in CALL_MIX:
            await asyncio.gather(
                *(self._call(client, query, task, question, options, i) for i in range(n))
            )

    async def _call(
        self,
        client: RouterClient,
        query: int,
        task: Task,
        question: str,
        options: CallOptions,
        index: int = 0,
    ) -> None:
        step, started = self.step, time.monotonic()
        rid, key = self.request_id(query), self.routing_key(query)
        try:
            if task is Task.EMBEDDING:
                e = await client.embed(question, request_id=rid, routing_key=key, options=options)
                call = Call(step, query, task, started, e.provider.value, e.fallback, e.total_ms)
            else:
                features = {"max_tokens": self.max_tokens, **_FEATURES.get((task, index), {})}
                prompt = _TOOL_PROMPT if "tools" in features else _PROMPTS[task]
                r = await client.generate(
                    prompt.format(q=question),
                    task=task,
                    request_id=rid,
                    routing_key=key,
                    options=options,
                    **features,
                ).collect()
                ttft = r.timings.time_to_first_token_ms
                call = Call(step, query, task, started, r.provider.value, r.fallback, ttft)
        except RouterError as err:
            code = err.code.name if err.code is not None else err.status_code.name
            call = Call(step, query, task, started, "error", error=code)
        self.calls.append(call)

    # --- views ------------------------------------------------------------------------------

    def of_step(self, step: str) -> list[Call]:
        return [c for c in self.calls if c.step == step]

    def since(self, t: float) -> list[Call]:
        return [c for c in self.calls if c.started >= t]

    @property
    def errors(self) -> int:
        return sum(1 for c in self.calls if c.provider == "error")


def engines(calls: Sequence[Call]) -> Counter[str]:
    """Calls per answering engine ("error" for user-visible errors)."""
    return Counter(c.provider for c in calls)


def vllm_share(calls: Sequence[Call]) -> tuple[float, int, int]:
    """vLLM's share of the answered generate calls, from each answer's ``start.provider`` (a
    fallback answer counts for the engine that gave it); also the calls and distinct queries."""
    answered = [c for c in calls if c.task is not Task.EMBEDDING and c.provider != "error"]
    if not answered:
        return 0.0, 0, 0
    vllm = sum(1 for c in answered if c.provider == "vllm")
    return vllm / len(answered), len(answered), len({c.query for c in answered})


def ttft_p95(calls: Sequence[Call], provider: str) -> float | None:
    return p95(
        [c.ttft_ms for c in calls if c.provider == provider and c.task is not Task.EMBEDDING]
    )
