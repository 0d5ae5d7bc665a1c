"""GenAI spans and metrics around the dispatcher (semantic conventions: protocols.md 3.1).

The router's ``chat {model}`` span (kind CLIENT) covers the whole stream: the httpx span ends
at the response headers (protocols.md 3.3), so it cannot. Retries and fallbacks are span
events the dispatcher adds to the current span. ``request_id`` is baggage under the span, so
it reaches the engines in the ``baggage`` header and every span as an attribute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Sequence

from opentelemetry import baggage, context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmcore.telemetry._tracing import REQUEST_ID_KEY
from router_service.dispatch import Event, Finished, Started, Text
from router_service.errors import RouterError
from router_service.placement import Candidate
from router_service.telemetry._router_metrics import RouterMetrics
from router_service.values import EmbedOutput

CHAT = "chat"
EMBEDDINGS = "embeddings"


class GenAIObserver:
    """Wraps one request's dispatcher call in a span and records its metrics."""

    def __init__(
        self,
        tracer: trace.Tracer,
        metrics: RouterMetrics | None = None,
        *,
        capture_content: bool = False,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._capture = capture_content

    async def generation(
        self,
        events: AsyncGenerator[Event, None],
        request_id: str,
        task: str,
        model: str,
        candidates: Sequence[Candidate],
        prompt: str = "",
    ) -> AsyncGenerator[Event, None]:
        """``events`` re-yielded under a ``chat {model}`` span."""
        planned: str = candidates[0].provider if candidates else ""
        model = model or (candidates[0].model if candidates else "")
        trace.get_current_span().set_attribute(REQUEST_ID_KEY, request_id)
        if self._metrics is not None and planned:
            self._metrics.split_decisions.labels(task, planned).inc()
        ctx = baggage.set_baggage(REQUEST_ID_KEY, request_id)
        span = self._tracer.start_span(
            f"{CHAT} {model}",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": CHAT,
                "gen_ai.provider.name": planned,
                "gen_ai.request.model": model,
                "gen_ai.request.stream": True,
                "llmgateway.task": task,
                REQUEST_ID_KEY: request_id,
            },
        )
        if self._capture and prompt:
            span.set_attribute("gen_ai.input.messages", prompt)
        token = context.attach(trace.set_span_in_context(span, ctx))
        t0 = time.perf_counter()
        ttft: float | None = None
        provider: str = planned
        tokens = 0
        finished: Finished | None = None
        error = ""
        parts: list[str] = []
        try:
            async with contextlib.aclosing(events):
                async for ev in events:
                    if isinstance(ev, Text):
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                            span.set_attribute("gen_ai.response.time_to_first_chunk", ttft)
                        tokens += ev.tokens
                        if self._capture:
                            parts.append(ev.text)
                    elif isinstance(ev, Started):
                        provider = ev.provider
                        span.set_attribute("gen_ai.provider.name", ev.provider)
                        span.set_attribute("gen_ai.response.model", ev.engine_model)
                        span.set_attribute("llmgateway.fallback", ev.fallback)
                        span.set_attribute("llmgateway.attempt", ev.attempt)
                    elif isinstance(ev, Finished):
                        finished = ev
                    yield ev
        except RouterError as err:
            error = err.kind.value
            provider = err.provider or provider
            span.record_exception(err)
            raise
        except GeneratorExit:  # closed early: the client went away (unless it had the end)
            error = "" if finished is not None else "cancelled"
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__name__
            span.record_exception(exc)
            raise
        finally:
            total = time.perf_counter() - t0
            output = tokens
            prompt_tokens = 0
            if finished is not None:
                output = (
                    finished.completion_tokens if finished.completion_tokens is not None else tokens
                )
                prompt_tokens = finished.prompt_tokens or 0
                span.set_attribute(
                    "gen_ai.response.finish_reasons", [finished.finish_reason or "stop"]
                )
                span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", output)
            if self._capture and parts:
                span.set_attribute("gen_ai.output.messages", "".join(parts))
            if error:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
            self._record(CHAT, provider, model, task, total, ttft, prompt_tokens, output, error)
            span.end()
            context.detach(token)

    async def embedding(
        self,
        call: Awaitable[tuple[Candidate, EmbedOutput]],
        request_id: str,
        model: str,
        candidates: Sequence[Candidate],
    ) -> tuple[Candidate, EmbedOutput]:
        """``call`` (the dispatcher's embed) awaited under an ``embeddings {model}`` span."""
        planned: str = candidates[0].provider if candidates else ""
        model = model or (candidates[0].model if candidates else "")
        trace.get_current_span().set_attribute(REQUEST_ID_KEY, request_id)
        if self._metrics is not None and planned:
            self._metrics.split_decisions.labels("embedding", planned).inc()
        ctx = baggage.set_baggage(REQUEST_ID_KEY, request_id)
        t0 = time.perf_counter()
        provider: str = planned
        with self._tracer.start_as_current_span(
            f"{EMBEDDINGS} {model}",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": EMBEDDINGS,
                "gen_ai.provider.name": planned,
                "gen_ai.request.model": model,
                "llmgateway.task": "embedding",
                REQUEST_ID_KEY: request_id,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = context.attach(baggage.set_baggage(REQUEST_ID_KEY, request_id))
            try:
                cand, out = await call
            except RouterError as err:
                provider = err.provider or provider
                span.record_exception(err)
                span.set_attribute("error.type", err.kind.value)
                span.set_status(Status(StatusCode.ERROR, err.kind.value))
                self._record(
                    EMBEDDINGS,
                    provider,
                    model,
                    "embedding",
                    time.perf_counter() - t0,
                    None,
                    0,
                    0,
                    err.kind.value,
                )
                raise
            finally:
                context.detach(token)
            span.set_attribute("gen_ai.provider.name", cand.provider)
            span.set_attribute("gen_ai.response.model", cand.engine_model)
            span.set_attribute("gen_ai.usage.input_tokens", out.prompt_tokens)
            span.set_attribute("llmgateway.fallback", cand.fallback)
            if out.vectors:
                span.set_attribute("gen_ai.embeddings.dimension.count", len(out.vectors[0]))
            self._record(
                EMBEDDINGS,
                cand.provider,
                model,
                "embedding",
                time.perf_counter() - t0,
                None,
                out.prompt_tokens,
                0,
                "",
            )
            return cand, out

    def failed(self, operation: str, failure: RouterError | None) -> None:
        """Count a request's failure by code (every failure, engine or not)."""
        if failure is not None and self._metrics is not None:
            self._metrics.errors.labels(operation, failure.provider or "", failure.kind.value).inc()

    def _record(
        self,
        operation: str,
        provider: str,
        model: str,
        task: str,
        total: float,
        ttft: float | None,
        input_tokens: int,
        output_tokens: int,
        error: str,
    ) -> None:
        m = self._metrics
        if m is None or not provider:
            return
        m.requests.labels(operation, provider, task, "error" if error else "ok").inc()
        if error:
            return
        labels = (operation, provider, model, task)
        m.duration.labels(*labels).observe(total)
        if ttft is not None:
            m.ttft.labels(*labels).observe(ttft)
            if output_tokens > 1:
                m.tpot.labels(*labels).observe((total - ttft) / (output_tokens - 1))
        m.tokens.labels(*labels, "input").observe(input_tokens)
        if operation == CHAT:
            m.tokens.labels(*labels, "output").observe(output_tokens)
