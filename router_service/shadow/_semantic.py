"""Semantic similarity of a shadow pair: do the two answers *mean* the same?

The lexical score (``_compare.text_similarity``) is a bag-of-words Jaccard: two correct answers
worded differently score low, and a fluent wrong answer that reuses the question's words can
score high. So, next to it, each sampled pair gets the cosine of the two answers' embeddings:

* **One model on one engine for both sides.** Both answers go through the router's own Embed
  path (``Dispatcher.embed``) in *one* call, so both vectors come from the same model on the same
  engine: the score measures the answers, never an Ollama-vs-vLLM embedding difference (which is
  real: see the embedding parity gate). The model and engine are ``flags.shadow_semantic``.
* **Answers only.** Reasoning is not compared: the dispatcher's text events carry the answer
  (reasoning, where an engine streams it separately, never reaches the pair's text), and inline
  ``<think>…</think>`` blocks (Ollama's deepseek-r1 style) are cut here.
* **JSON field by field.** When both answers are JSON, they are compared as canonical JSON
  (sorted keys, no whitespace): the per-field agreement (equal values over the union of dotted
  paths) and whether the whole documents are equal; the embedding then sees the canonical form,
  so key order and spacing never lower the score.
* **Bounded cost.** A sample (``sample_rate``), at most ``max_concurrency`` scoring calls per
  router and ``queue_size`` waiting; beyond that, or when the call fails or passes its own
  ``timeout``, the pair is recorded unscored with ``semantic_dropped`` (counted, never retried).

Plain logic plus the bounded runner; no grpc.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```$", re.DOTALL)


def answer_text(text: str) -> str:
    """The answer without inline reasoning (``<think>…</think>``, also an unclosed one)."""
    return _THINK.sub("", text).strip()


def parse_json(text: str) -> Any:
    """The JSON value of an answer (a Markdown code fence around it is allowed); raises
    ``ValueError`` when it is not JSON. Bare numbers and strings count as JSON only when the
    answer is exactly that, which is what a structured-output request gets."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body or body[0] not in "{[":
        raise ValueError("not a JSON object or array")
    return json.loads(body)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _leaves(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _leaves(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _leaves(v, f"{prefix}[{i}]", out)
    else:
        out[prefix] = canonical_json(value)


@dataclass(frozen=True, slots=True)
class JsonFigures:
    field_agreement: float  # equal leaves over the union of both documents' leaf paths
    equal: bool  # canonical forms equal
    canonical: tuple[str, str]  # (primary, shadow): what the embedding sees


def json_figures(primary: str, shadow: str) -> JsonFigures | None:
    """Field-by-field comparison when both answers are JSON; None otherwise."""
    try:
        a, b = parse_json(primary), parse_json(shadow)
    except ValueError:
        return None
    la: dict[str, str] = {}
    lb: dict[str, str] = {}
    _leaves(a, "", la)
    _leaves(b, "", lb)
    paths = la.keys() | lb.keys()
    same = sum(1 for p in paths if p in la and p in lb and la[p] == lb[p])
    ca, cb = canonical_json(a), canonical_json(b)
    return JsonFigures(same / len(paths) if paths else 1.0, ca == cb, (ca, cb))


@dataclass(slots=True)
class BoundCounters:
    admitted: int = 0
    dropped: int = 0  # refused: running and waiting were full
    timed_out: int = 0
    failed: int = 0


class Bounded:
    """At most ``concurrency`` calls at once and ``queue`` more waiting; limits are read at each
    admission (they come with the request's config, which may change). Single event loop."""

    def __init__(self) -> None:
        self._running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.counters = BoundCounters()

    @property
    def in_flight(self) -> int:
        return self._running + len(self._waiting)

    def admit(self, concurrency: int, queue: int) -> bool:
        """Whether one more call fits; counts a refusal."""
        if self.in_flight >= concurrency + queue:
            self.counters.dropped += 1
            return False
        self.counters.admitted += 1
        return True

    async def run(self, concurrency: int, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once a slot is free (call :meth:`admit` first)."""
        if self._running >= concurrency:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(fut)
            try:
                await fut  # the slot is handed over: _running already counts us
            except asyncio.CancelledError:
                if fut in self._waiting:
                    self._waiting.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._release()  # handed a slot we will not use
                raise
        else:
            self._running += 1
        try:
            return await fn()
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._running -= 1
