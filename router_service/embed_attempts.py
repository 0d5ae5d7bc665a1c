"""Embed's attempt loop (the Generate loop is in ``dispatch``): the same retries, fallbacks,
breakers and outcomes, without streaming."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from llmcore.vocabulary import ProviderName
from router_service.attempt_errors import as_embedding_error, circuit_open, fill, span_event
from router_service.errors import ErrorKind, RouterError
from router_service.lifecycle.life import RequestLife
from router_service.lifecycle.outcome import Outcome
from router_service.limits import check_embedding
from router_service.placement import Candidate
from router_service.values import EmbedCall, EmbedOutput, Route

if TYPE_CHECKING:
    from router_service.dispatch import Dispatcher


async def embed_attempts(
    d: Dispatcher,
    request_id: str,
    inputs: tuple[str, ...],
    candidates: list[Candidate],
    deadline: float,
    life: RequestLife,
    route: Route | None = None,
    dimensions: int | None = None,
    truncate: bool = True,
) -> tuple[Candidate, EmbedOutput]:
    """Embed's attempt loop: retries, fallback, and every attempt's outcome on ``life`` (an
    engine it fell back from is reported with its failure, as for Generate)."""
    last: RouterError | None = None
    down: set[ProviderName] = set()
    try:
        async with asyncio.timeout_at(deadline):
            for cand in candidates:
                provider = d.providers.get(cand.provider)
                if provider is None or cand.provider in down:
                    continue
                # Issue 17: ``route`` carries the replicas tried across attempts.
                call = EmbedCall(
                    cand.engine_model,
                    inputs,
                    request_id,
                    route=route,
                    dimensions=dimensions,
                    truncate=truncate,
                )
                breaker = d.breakers[cand.provider]
                for attempt_no in range(1, d.retry.attempts + 1):
                    if not breaker.allow():
                        last = circuit_open(cand, request_id)
                        break
                    attempt = life.begin(cand.provider, cand.model)
                    try:
                        out = check_embedding(
                            await provider.embed(call),
                            cand.model,
                            len(inputs),
                            cand.provider,
                            cand.engine_model,
                            dimensions,
                        )
                    except RouterError as err:
                        d.fail(breaker, err, cand, attempt, life, Outcome.ENGINE_ERROR)
                        fill(err, cand, request_id)
                        last = err
                        if not err.retryable or attempt_no == d.retry.attempts:
                            break
                        d.stats.record_retry(cand.provider)
                        span_event("gen_ai.retry", cand, err, attempt_no)
                        await d.sleep(d.retry.delay(attempt_no, err.retry_after_s, d.rng))
                    except BaseException:
                        breaker.release()  # cancelled, or the deadline (judged below)
                        raise
                    else:
                        breaker.success()
                        life.succeed(attempt, out.prompt_tokens, 0)
                        d.stats.record_start(cand.provider, cand.fallback)
                        d.stats.record_success(cand.provider)
                        return cand, out
                assert last is not None
                if last.kind is ErrorKind.MODEL_NOT_FOUND:
                    continue
                if last.engine_down or last.retryable:
                    down.add(cand.provider)
                    span_event("gen_ai.fallback", cand, last)
                    continue
                raise as_embedding_error(last)
    except TimeoutError as exc:
        silent = life.open
        provider_name = ""
        if silent is not None:  # the engine never answered: its timeout
            provider_name = silent.provider
            life.deadline(silent)
            d.stats.record_failure(silent.provider, ErrorKind.LLM_TIMEOUT)
        elif last is not None:
            provider_name = last.provider
        raise RouterError(
            ErrorKind.EMBEDDING_SERVICE_ERROR,
            "deadline exceeded before the embedding engine answered",
            provider=provider_name,
            request_id=request_id,
            cause=ErrorKind.LLM_TIMEOUT,
        ) from exc
    if last is None:
        raise RouterError(
            ErrorKind.EMBEDDING_SERVICE_ERROR,
            "no configured engine can serve this embedding request",
            request_id=request_id,
            cause=ErrorKind.LLM_UNAVAILABLE,
        )
    raise as_embedding_error(last)
