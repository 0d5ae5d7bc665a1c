"""The shadow mirror: runs a sample of Generate requests a second time, on the shadow engine, off
the request path, and records how the two answers compare.

A sampled request goes through four steps:

1. The servicer calls :meth:`ShadowMirror.begin` once the request is admitted. The mirror decides
   (phase and flags, the sample, whether the shadow engine serves the model, capacity) and hands
   back a ticket, or None (the handler then does nothing more for the shadow).
2. **The shadow starts when the primary starts answering**: ``start_delay_s`` (2 ms) after the
   handler has passed its first delta to gRPC (``ShadowTicket.start``). Decided this way rather
   than at admission so that the shadow's own request work (building and sending the engine
   request, parsing its first chunks, all on the router's one event loop) never lands inside its
   primary's time to first token; the short delay lets that first delta actually leave (and, in
   tests and benchmarks, reach a client on the same event loop) before the mirror's work runs.
   Measured: starting at admission, or right after the yield, added 1.5-3.8 ms to the p50 TTFT
   seen by an in-process client; with the delay, nothing measurable. The two still run
   concurrently for the rest of the primary's answer, so they are measured under the same router
   load, and each side's TTFT and decode rate are taken from its own start, so the figures
   compare. A primary that ends before its first delta (failed, or an empty answer) starts its
   shadow at once; one whose caller went away first never starts it.
3. The handler appends the primary's text deltas to the ticket (only sampled requests pay for
   that) and calls :meth:`ShadowTicket.finish` in its ``finally``: that stores the outcome and
   schedules the comparison with ``call_soon``; the handler never awaits the shadow and does no
   comparison work itself.
4. Whichever side ends last completes the pair, once; with ``shadow_compare_embeddings`` the
   semantic similarity (``_semantic``) runs in its own task, under its own bounds.

**Whole episodes.** The sample is drawn by routing key (memOS's query id, the request id when
there is none), so all calls of a sampled query are mirrored and none of an unsampled one: the
report can judge whole queries, and the split (which hashes the same key) never splits one.

Bounds (router settings): at most ``max_concurrency`` shadows run and up to ``queue_size`` more
are accepted and wait (for their primary's first delta, then for a slot); beyond that a mirror is
dropped and counted. Each shadow has its own deadline (``timeout_s`` from its start) and exactly
one attempt on one engine: no retry, no fallback (the app gives the mirror its own single-attempt
``Dispatcher``, with its own breakers and engine stats, so a failing shadow engine never shows in
or trips anything of the primary's path). ``stop`` cancels every shadow, which closes its stream
and makes the engine abort. Shadow requests reach the engine as ``X-Request-Id: <id>-shadow``
and are recorded with ``shadow=True``, outside the primary's SLO figures. Texts are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context

from llmcore.vocabulary import ProviderName, TaskName
from router_service.capabilities import unsupported
from router_service.config.routing import RoutingConfig
from router_service.dispatch import ChatIntent, Dispatcher, Finished, Text, Thinking, ToolCalls
from router_service.errors import ErrorKind, RouterError
from router_service.placement import Candidate
from router_service.request_stats import RequestStatsRecorder, ShadowRecord
from router_service.requests import GenerateInput
from router_service.shadow._compare import decode_rate
from router_service.shadow._evaluate import Pair, PairEvaluator, Scored
from router_service.shadow._kinds import SideOutput, compare_kinds
from router_service.shadow._sample import sampled
from router_service.values import ToolCallFragment

log = logging.getLogger(__name__)

SHADOW_ID_SUFFIX = "-shadow"


@dataclass(frozen=True, slots=True)
class MirrorOptions:
    """The mirror's bounds (from ``RouterSettings.shadow_*``)."""

    max_concurrency: int = 8
    queue_size: int = 64
    timeout_s: float = 60.0
    # Captured texts (only with flags.shadow_capture_content) are cut to this many characters.
    capture_max_chars: int = 2000
    # How long after the primary's first delta the shadow starts (see the module docstring).
    start_delay_s: float = 0.002


@dataclass(slots=True)
class MirrorCounters:
    """What the mirror did since it started (for tests, status and benchmarks)."""

    # Cumulative counts.
    mirrored: int = 0  # accepted (then started, or forgotten with a cancelled primary)
    dropped: int = 0  # refused because the bounds were full
    completed: int = 0  # shadows that ran and ended, whatever the outcome
    compared: int = 0  # pairs recorded
    skipped: Counter[str] = field(default_factory=Counter)  # sampled but not mirrored, by reason


@dataclass(frozen=True, slots=True)
class _Side:
    ok: bool
    ttft_ms: float
    tokens_per_second: float
    error: ErrorKind | None = None
    text: str = ""
    reasoning: str = ""
    calls: tuple[ToolCallFragment, ...] = ()
    finish_length: bool = False


@dataclass(slots=True, eq=False)
class _Job:
    request_id: str
    routing_key: str
    task: TaskName
    model: str
    engine_model: str
    primary_provider: ProviderName
    shadow_provider: ProviderName
    intent: ChatIntent
    cfg: RoutingConfig  # the request's config: capture, embeddings, prompt policy
    prompt: str = ""
    question: str = ""  # the last user message, kept (in memory) only for the judge
    parts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallFragment] = field(default_factory=list)
    primary: _Side | None = None
    abandoned: bool = False
    shadow: _Side | None = None
    completed: bool = False


class ShadowTicket:
    """What the primary handler holds for a mirrored request."""

    __slots__ = ("_job", "_mirror", "parts", "reasoning", "started", "tool_calls")

    def __init__(self, mirror: ShadowMirror, job: _Job) -> None:
        self._mirror = mirror
        self._job = job
        # The handler appends each text delta of the primary here.
        self.parts = job.parts
        # ... and its reasoning deltas and tool-call fragments (compared, never executed).
        self.reasoning = job.reasoning
        self.tool_calls = job.tool_calls
        self.started = False

    def start(self) -> None:
        """The primary's first delta is out: the shadow starts ``start_delay_s`` later."""
        if not self.started:
            self.started = True
            self._mirror._schedule(self._job)

    def finish(
        self,
        *,
        answered_by: ProviderName | None,
        ok: bool,
        failed: bool,
        ttft_s: float | None,
        tokens_per_second: float,
        finish_length: bool = False,
    ) -> None:
        """The primary's outcome. Neither ``ok`` nor ``failed``: the caller went away (the pair
        is not compared, and a shadow not yet started never starts). A primary that ended
        before its first delta (failed, or an empty answer) starts its shadow now. Returns at
        once; the comparison runs later, outside the handler."""
        job = self._job
        if answered_by is not None:
            job.primary_provider = answered_by
        job.abandoned = not ok and not failed
        job.primary = _Side(
            ok,
            0.0 if ttft_s is None else ttft_s * 1000,
            tokens_per_second,
            finish_length=finish_length,
        )
        if not self.started:
            self.started = True
            self._mirror._start(job)  # at once: there is no first token left to protect
        asyncio.get_running_loop().call_soon(self._mirror._complete_if_ready, job)


class ShadowMirror:
    """Mirrors sampled Generate requests to the shadow engine; see the module docstring."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        recorder: RequestStatsRecorder,
        options: MirrorOptions | None = None,
        clock: Callable[[], float] = time.perf_counter,
        tracer: trace.Tracer | None = None,
        judge_rng: random.Random | None = None,
        judge_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Each shadow is its own trace, linked to the primary's span (never its child).
        self._tracer = tracer or trace.NoOpTracer()
        self._dispatcher = dispatcher
        self._recorder = recorder
        self._opt = options or MirrorOptions()
        self._clock = clock
        self._slots = asyncio.Semaphore(self._opt.max_concurrency)
        self._shadows: set[asyncio.Task[None]] = set()
        self._embeds: set[asyncio.Task[None]] = set()  # pair evaluations under way
        # The semantic scorer and the judge, each with its own bounds (``_evaluate``).
        self.evaluator = PairEvaluator(dispatcher, self._skip, judge_rng, judge_clock)
        self._waiters: set[asyncio.Event] = set()
        self._running = 0
        self._pending = 0  # accepted, waiting for the primary's first delta
        self._stopped = False
        self.counters = MirrorCounters()

    @property
    def in_flight(self) -> int:
        """Shadows accepted and not yet ended, plus embedding comparisons under way."""
        return self._pending + len(self._shadows) + len(self._embeds)

    @property
    def running(self) -> int:
        """Shadows holding a concurrency slot."""
        return self._running

    # --- the request path: cheap and never blocking ---------------------------------------

    def begin(
        self, cfg: RoutingConfig, inp: GenerateInput, candidates: Sequence[Candidate]
    ) -> ShadowTicket | None:
        """Start mirroring ``inp`` when ``cfg`` (the request's config) says so and it is in the
        sample; None when it is not mirrored (the handler then collects nothing)."""
        if not cfg.shadow_active or self._stopped:
            return None
        try:
            return self._begin(cfg, inp, candidates)
        except Exception:  # whatever goes wrong here, the primary must not notice
            log.exception("shadow mirror fault (request_id=%s)", inp.intent.request_id)
            return None

    def _begin(
        self, cfg: RoutingConfig, inp: GenerateInput, candidates: Sequence[Candidate]
    ) -> ShadowTicket | None:
        rid = inp.intent.request_id
        if not sampled(inp.routing_key, cfg.shadow_sample_rate):  # per episode
            return None
        shadow = cfg.shadow_provider
        assert shadow is not None  # shadow_active says so
        primary = candidates[0].provider if candidates else cfg.primary
        model = inp.model or cfg.catalog.model_for(inp.task)
        if primary == shadow:
            # e.g. SPLIT with shadow_during_split and this request placed on the shadow engine.
            self._skip("same_provider")
            return None
        engine_model = cfg.catalog.engine_name(model, shadow)
        if engine_model is None:
            self._skip("model_not_served")
            return None
        caps = cfg.catalog.capabilities_of(model)
        if unsupported(inp.intent.features, inp.intent.messages, shadow, model, caps):
            self._skip("feature_unsupported")  # e.g. a forced tool call, which Ollama lacks
            return None
        if self._pending + len(self._shadows) >= self._opt.max_concurrency + self._opt.queue_size:
            self.counters.dropped += 1
            self._recorder.record_shadow(
                ShadowRecord(rid, inp.task, model, primary, shadow, dropped=True)
            )
            return None
        job = _Job(
            request_id=rid,
            routing_key=inp.routing_key,
            task=inp.task,
            model=model,
            engine_model=engine_model,
            primary_provider=primary,
            shadow_provider=shadow,
            # The same features (format, tools): a mirrored tool call is only compared, the
            # router never executes a tool.
            intent=replace(inp.intent, request_id=rid + SHADOW_ID_SUFFIX),
            cfg=cfg,
        )
        if cfg.shadow_capture_content:
            job.prompt = self._cut(_last_user_message(inp.intent))
        if cfg.judge.enabled:
            job.question = _last_user_message(inp.intent)
        self.counters.mirrored += 1
        self._pending += 1
        return ShadowTicket(self, job)

    def _schedule(self, job: _Job) -> None:
        if self._opt.start_delay_s > 0:
            asyncio.get_running_loop().call_later(self._opt.start_delay_s, self._start, job)
        else:
            self._start(job)

    def _start(self, job: _Job) -> None:
        self._pending -= 1
        if job.abandoned:  # the caller went away first: no pair to compare
            self._skip("primary_cancelled")
        elif not self._stopped:
            self._track(self._shadows, self._run(job))

    # --- off the request path -------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        # The task was created under the primary's span: link to it, start a new trace.
        primary = trace.get_current_span().get_span_context()
        ctx = baggage.set_baggage("request_id", job.intent.request_id, otel_context.Context())
        span = self._tracer.start_span(
            f"chat {job.model}",
            context=ctx,
            kind=trace.SpanKind.CLIENT,
            links=[trace.Link(primary)] if primary.is_valid else [],
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": job.shadow_provider,
                "gen_ai.request.model": job.model,
                "gen_ai.response.model": job.engine_model,
                "llmgateway.shadow": True,
                "llmgateway.primary_request_id": job.request_id,
                "request_id": job.intent.request_id,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span, ctx))
        try:
            await self._run_traced(job)
        finally:
            if job.shadow is not None and job.shadow.error is not None:
                span.set_attribute("error.type", job.shadow.error.value)
                span.set_status(trace.StatusCode.ERROR, job.shadow.error.value)
            span.end()
            otel_context.detach(token)

    async def _run_traced(self, job: _Job) -> None:
        async with self._slots:
            self._running += 1
            try:
                job.shadow = await self._generate(job)
            except Exception:  # a shadow must never take anything else down
                log.exception("shadow failed inside the router (request_id=%s)", job.request_id)
                job.shadow = _Side(False, 0.0, 0.0, ErrorKind.ROUTER_INTERNAL)
            finally:
                self._running -= 1
        self.counters.completed += 1
        self._complete_if_ready(job)

    async def _generate(self, job: _Job) -> _Side:
        """One attempt on the shadow engine, bounded by the shadow's own deadline."""
        t0 = self._clock()
        deadline = asyncio.get_running_loop().time() + self._opt.timeout_s
        cand = Candidate(job.shadow_provider, job.model, job.engine_model, fallback=False)
        parts: list[str] = []
        thought: list[str] = []
        calls: list[ToolCallFragment] = []
        length = False
        tokens = prompt_tokens = 0
        completion: int | None = None
        ttft: float | None = None
        error: ErrorKind | None = None
        events = self._dispatcher.generate(
            job.intent,
            [cand],
            deadline,
            job.cfg.prompt_prefixes,
            capabilities=job.cfg.catalog.capabilities_of,
        )
        try:
            async with contextlib.aclosing(events):
                async for ev in events:
                    if isinstance(ev, Text):
                        if ttft is None:
                            ttft = self._clock() - t0
                        tokens += ev.tokens
                        parts.append(ev.text)
                    elif isinstance(ev, Thinking):
                        if ttft is None:
                            ttft = self._clock() - t0
                        tokens += ev.tokens
                        thought.append(ev.text)
                    elif isinstance(ev, ToolCalls):  # compared, never executed
                        if ttft is None:
                            ttft = self._clock() - t0
                        calls.extend(ev.fragments)
                    elif isinstance(ev, Finished):
                        length = ev.finish_reason == "length"
                        completion = ev.completion_tokens
                        if completion is None:
                            completion = tokens
                        prompt_tokens = ev.prompt_tokens or 0
        except RouterError as err:
            error = err.cause or err.kind
        total = self._clock() - t0
        if error is None and completion is None:  # pragma: no cover - dispatch raises instead
            error = ErrorKind.LLM_INVALID_RESPONSE
        self._recorder.record(
            job.shadow_provider,
            job.task,
            error,
            None if ttft is None else ttft * 1000,
            total * 1000,
            prompt_tokens,
            completion or 0,
            shadow=True,
        )
        if error is not None:
            return _Side(False, 0.0, 0.0, error)
        return _Side(
            True,
            (total if ttft is None else ttft) * 1000,
            decode_rate(completion or 0, ttft, total),
            text="".join(parts),
            reasoning="".join(thought),
            calls=tuple(calls),
            finish_length=length,
        )

    def _complete_if_ready(self, job: _Job) -> None:
        primary, shadow = job.primary, job.shadow
        if primary is None or shadow is None or job.completed or self._stopped:
            return
        # Both sides may report before the deferred call runs: complete once.
        job.completed = True
        if job.abandoned:
            self._skip("primary_cancelled")
            return
        primary_text = "".join(job.parts)
        pair, work = self.evaluator.prepare(
            Pair(
                job.cfg,
                job.request_id,
                job.routing_key,
                job.model,
                job.question,
                primary_text,
                shadow.text,
                primary.ok and shadow.ok,
            )
        )
        if work is None:
            self._record(job, primary_text, pair)
        else:
            self._track(self._embeds, self._evaluate_then_record(job, primary_text, pair, work))

    async def _evaluate_then_record(
        self, job: _Job, primary_text: str, pair: Scored, work: Coroutine[Any, Any, None]
    ) -> None:
        await work
        self._record(job, primary_text, pair)

    def _record(self, job: _Job, primary_text: str, pair: Scored) -> None:
        figures = pair.figures
        primary, shadow = job.primary, job.shadow
        assert primary is not None
        assert shadow is not None
        self._recorder.record_shadow(
            ShadowRecord(
                request_id=job.request_id,
                task=job.task,
                model=job.model,
                primary_provider=job.primary_provider,
                shadow_provider=job.shadow_provider,
                primary_ok=primary.ok,
                shadow_ok=shadow.ok,
                shadow_error=shadow.error,
                primary_ttft_ms=primary.ttft_ms,
                shadow_ttft_ms=shadow.ttft_ms,
                primary_tokens_per_second=primary.tokens_per_second,
                shadow_tokens_per_second=shadow.tokens_per_second,
                length_ratio=figures.length_ratio,
                text_similarity=figures.text_similarity,
                embedding_cosine=pair.semantic,
                routing_key=job.routing_key,
                semantic_dropped=pair.semantic_dropped,
                json_field_agreement=pair.json.field_agreement if pair.json else None,
                json_equal=pair.json.equal if pair.json else None,
                judge_verdict=pair.judge,
                judge_swap_agreed=pair.judge_swap_agreed,
                kinds=compare_kinds(
                    job.intent.features,
                    SideOutput(
                        primary_text,
                        "".join(job.reasoning),
                        tuple(job.tool_calls),
                        primary.finish_length,
                    ),
                    SideOutput(shadow.text, shadow.reasoning, shadow.calls, shadow.finish_length),
                    primary.ok and shadow.ok,
                ),
                prompt=job.prompt,
                primary_text=self._cut(primary_text) if job.cfg.shadow_capture_content else "",
                shadow_text=self._cut(shadow.text) if job.cfg.shadow_capture_content else "",
            )
        )
        self.counters.compared += 1
        self._notify()

    # --- bookkeeping ----------------------------------------------------------------------

    def _cut(self, text: str) -> str:
        return text[: self._opt.capture_max_chars]

    def _skip(self, reason: str) -> None:
        self.counters.skipped[reason] += 1
        self._notify()

    def _track(self, tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            self._notify()

        task.add_done_callback(done)

    def _notify(self) -> None:
        for ev in self._waiters:
            ev.set()
        self._waiters.clear()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the mirror's state changes
        (a pair recorded, a mirror skipped, a task ended). Bound it with ``asyncio.timeout``."""
        while not predicate():
            ev = asyncio.Event()
            self._waiters.add(ev)
            await ev.wait()

    async def stop(self) -> None:
        """Cancel every shadow and comparison (their engine streams close) and accept no more."""
        self._stopped = True
        tasks = [*self._shadows, *self._embeds]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _last_user_message(intent: ChatIntent) -> str:
    for m in reversed(intent.messages):
        if m.role == "user":
            return m.content
    return ""
