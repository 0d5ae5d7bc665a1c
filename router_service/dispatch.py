"""Runs one request against the engines: attempts, retries before the first token, fallbacks.

No grpc here: the servicer translates the events below into proto messages and a
``RouterError`` into a status.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from opentelemetry import trace

from llmcore.vocabulary import ProviderName
from router_service.breaker import COUNTED, Breaker, BreakerPolicy, Breakers
from router_service.errors import ErrorKind, RouterError
from router_service.placement import Candidate
from router_service.prompt_policy import with_system_prefix
from router_service.providers import Provider
from router_service.retry import RetryPolicy
from router_service.stats import RouterStats
from router_service.values import (
    ChatCall,
    ChatMessage,
    EmbedCall,
    EmbedOutput,
    FinishReason,
    SamplingOptions,
)


@dataclass(frozen=True, slots=True)
class Started:
    provider: ProviderName
    model: str
    engine_model: str
    fallback: bool
    attempt: int
    # Engines this request gave up on before this one answered, with their last error: the
    # control service must see them fail even though the fallback saved the request.
    failed_over: tuple[tuple[ProviderName, ErrorKind], ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int | None
    completion_tokens: int | None


Event = Started | Text | Finished


@dataclass(frozen=True, slots=True)
class ChatIntent:
    request_id: str
    messages: tuple[ChatMessage, ...]
    options: SamplingOptions


class Dispatcher:
    """Tries candidates in order; owns no sockets (providers do)."""

    def __init__(
        self,
        providers: Mapping[ProviderName, Provider],
        retry: RetryPolicy,
        stats: RouterStats,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self._providers = providers
        self._retry = retry
        self._stats = stats
        self.breakers = breakers or Breakers(BreakerPolicy())
        self._rng = rng or random.Random()
        self._sleep = sleep or asyncio.sleep

    async def generate(
        self,
        intent: ChatIntent,
        candidates: list[Candidate],
        deadline: float,
        prompt_prefixes: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Events of the answering attempt. ``deadline`` is ``loop.time()``-based;
        ``prompt_prefixes`` maps a logical model to the system prefix its policy adds."""
        last: RouterError | None = None
        down: set[ProviderName] = set()
        failed_over: list[tuple[ProviderName, ErrorKind]] = []
        try:
            async with asyncio.timeout_at(deadline):
                for cand in candidates:
                    if cand.provider in down:
                        continue
                    provider = self._providers.get(cand.provider)
                    if provider is None:
                        continue
                    messages = intent.messages
                    if prompt_prefixes and cand.model in prompt_prefixes:
                        messages = with_system_prefix(messages, prompt_prefixes[cand.model])
                    call = ChatCall(cand.engine_model, messages, intent.options, intent.request_id)
                    breaker = self.breakers[cand.provider]
                    for attempt in range(1, self._retry.attempts + 1):
                        if not breaker.allow():
                            last = _circuit_open(cand, intent.request_id)
                            break
                        started = False
                        judged = False
                        stream = provider.stream_chat(call)
                        try:
                            async for chunk in stream:
                                if not started:
                                    started = True
                                    self._stats.record_start(cand.provider, cand.fallback)
                                    yield Started(
                                        cand.provider,
                                        cand.model,
                                        cand.engine_model,
                                        cand.fallback,
                                        attempt,
                                        tuple(failed_over),
                                    )
                                if chunk.text:
                                    yield Text(chunk.text, chunk.tokens)
                                if chunk.done:
                                    breaker.success()
                                    judged = True
                                    self._stats.record_success(cand.provider)
                                    yield Finished(
                                        chunk.finish_reason,
                                        chunk.prompt_tokens,
                                        chunk.completion_tokens,
                                    )
                                    return
                        except RouterError as err:
                            judged = True
                            _judge(breaker, err)
                            self._stats.record_failure(cand.provider, err.kind)
                            _fill(err, cand, intent.request_id)
                            if started:
                                raise  # tokens were sent: no retry, the stream fails
                            last = err
                            if not err.retryable or attempt == self._retry.attempts:
                                break
                            self._stats.record_retry(cand.provider)
                            _event("gen_ai.retry", cand, err, attempt)
                            await self._sleep(
                                self._retry.delay(attempt, err.retry_after_s, self._rng)
                            )
                        finally:
                            if not judged:
                                breaker.release()  # cancelled: no verdict on the engine
                            await stream.aclose()
                    assert last is not None
                    if last.kind is ErrorKind.MODEL_NOT_FOUND:
                        continue
                    if last.engine_down or last.retryable:
                        down.add(cand.provider)
                        failed_over.append((cand.provider, last.kind))
                        _event("gen_ai.fallback", cand, last)
                        continue
                    raise last
        except TimeoutError as exc:
            raise RouterError(
                ErrorKind.LLM_TIMEOUT,
                "deadline exceeded before the engine finished",
                provider=last.provider if last else "",
                model=last.model if last else "",
                request_id=intent.request_id,
            ) from exc
        if last is None:
            raise RouterError(
                ErrorKind.LLM_UNAVAILABLE,
                "no configured engine can serve this request",
                request_id=intent.request_id,
            )
        raise last

    async def embed(
        self, request_id: str, inputs: tuple[str, ...], candidates: list[Candidate], deadline: float
    ) -> tuple[Candidate, EmbedOutput]:
        last: RouterError | None = None
        down: set[ProviderName] = set()
        try:
            async with asyncio.timeout_at(deadline):
                for cand in candidates:
                    provider = self._providers.get(cand.provider)
                    if provider is None or cand.provider in down:
                        continue
                    call = EmbedCall(cand.engine_model, inputs, request_id)
                    breaker = self.breakers[cand.provider]
                    for attempt in range(1, self._retry.attempts + 1):
                        if not breaker.allow():
                            last = _circuit_open(cand, request_id)
                            break
                        try:
                            out = await provider.embed(call)
                        except RouterError as err:
                            _judge(breaker, err)
                            self._stats.record_failure(cand.provider, err.kind)
                            _fill(err, cand, request_id)
                            last = err
                            if not err.retryable or attempt == self._retry.attempts:
                                break
                            self._stats.record_retry(cand.provider)
                            _event("gen_ai.retry", cand, err, attempt)
                            await self._sleep(
                                self._retry.delay(attempt, err.retry_after_s, self._rng)
                            )
                        except BaseException:
                            breaker.release()
                            raise
                        else:
                            breaker.success()
                            self._stats.record_start(cand.provider, cand.fallback)
                            self._stats.record_success(cand.provider)
                            return cand, out
                    assert last is not None
                    if last.kind is ErrorKind.MODEL_NOT_FOUND:
                        continue
                    if last.engine_down or last.retryable:
                        down.add(cand.provider)
                        _event("gen_ai.fallback", cand, last)
                        continue
                    raise _as_embedding_error(last)
        except TimeoutError as exc:
            raise RouterError(
                ErrorKind.EMBEDDING_SERVICE_ERROR,
                "deadline exceeded before the embedding engine answered",
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
        raise _as_embedding_error(last)


def _event(name: str, cand: Candidate, err: RouterError, attempt: int = 0) -> None:
    """A retry or a fallback, as an event on the current span (the request's ``chat`` span)."""
    attrs: dict[str, str | int] = {
        "gen_ai.provider.name": cand.provider,
        "gen_ai.request.model": cand.model,
        "error.type": err.kind.value,
    }
    if attempt:
        attrs["llmgateway.attempt"] = attempt
    trace.get_current_span().add_event(name, attrs)


def _judge(breaker: Breaker, err: RouterError) -> None:
    if err.kind in COUNTED:
        breaker.failure()
    else:
        breaker.release()


def _circuit_open(cand: Candidate, request_id: str) -> RouterError:
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{cand.provider} circuit breaker is open: recent requests failed",
        provider=cand.provider,
        model=cand.model,
        request_id=request_id,
        engine_down=True,
    )


def _fill(err: RouterError, cand: Candidate, request_id: str) -> None:
    err.provider = err.provider or cand.provider
    err.model = cand.model
    err.request_id = request_id


def _as_embedding_error(err: RouterError) -> RouterError:
    """Engine failures of an Embed call carry memOS's ERR_5004; the gRPC code keeps the cause."""
    if err.kind in (ErrorKind.MODEL_NOT_FOUND, ErrorKind.INVALID_REQUEST):
        return err
    err.cause = err.kind
    err.kind = ErrorKind.EMBEDDING_SERVICE_ERROR
    return err
