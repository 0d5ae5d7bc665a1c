"""Runs one request against the engines: attempts, retries before the first token, fallbacks,
stream timeouts and continuation failover.

No grpc here: the servicer translates the events below into proto messages and a
``RouterError`` into a status. Every attempt is opened and closed on the request's
:class:`~router_service.lifecycle.RequestLife`, which reports each one, with its outcome,
against its engine (docs/failures.md).

One attempt of ``generate``, in order: the breaker allows it; the engine's stream is read under
a :class:`~router_service.lifecycle.watch.StreamWatch` (first-token, idle and deadline bounds);
each chunk is one place where token progress is marked (``_progress``: issue 15's reasoning and
tool deltas count there too). A failure before any text retries the engine, then falls back; a
failure after text was streamed either continues on the next engine from the text sent
(``lifecycle.continuation``) or ends the stream with the error.
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
from router_service.lifecycle import continuation
from router_service.lifecycle.life import Attempt, RequestLife
from router_service.lifecycle.outcome import Outcome
from router_service.lifecycle.timeouts import StreamPolicy
from router_service.lifecycle.watch import Expired, StreamTimeout, StreamWatch
from router_service.limits import check_embedding
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
    Route,
    SamplingOptions,
)


@dataclass(frozen=True, slots=True)
class Started:
    provider: ProviderName
    model: str
    engine_model: str
    fallback: bool
    attempt: int


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Continued:
    """The engine ``from_provider`` failed (``reason``) after ``offset_chars`` characters were
    streamed; ``provider`` continues the answer from there."""

    from_provider: ProviderName
    reason: ErrorKind
    provider: ProviderName
    model: str
    engine_model: str
    offset_chars: int


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int | None
    completion_tokens: int | None


Event = Started | Text | Continued | Finished


@dataclass(frozen=True, slots=True)
class ChatIntent:
    request_id: str
    messages: tuple[ChatMessage, ...]
    options: SamplingOptions
    # Issue 17 (engine pools): the request's placement context, on every call it makes.
    route: Route | None = None

    @property
    def plain_text(self) -> bool:
        """A plain-text answer: the only kind continuation may resume on another engine. A
        response schema or tools (issue 15) make it False."""
        return True


@dataclass(slots=True)
class _Stream:
    """What the client has been sent so far, across attempts."""

    parts: list[str]
    tokens: int = 0
    started: bool = False  # a Started event went out
    tool_call_streamed: bool = False  # set when tool-call deltas exist (issue 15)
    broken: RouterError | None = None  # the mid-stream failure being continued from

    @property
    def text(self) -> str:
        return "".join(self.parts)


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
        life: RequestLife | None = None,
        policy: StreamPolicy | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Events of the answering attempt(s). ``deadline`` is ``loop.time()``-based;
        ``prompt_prefixes`` maps a logical model to the system prefix its policy adds; ``life``
        gets every attempt (a throwaway one when None); ``policy`` bounds the streams and
        allows continuation (None: only the deadline, no continuation)."""
        life = life if life is not None else RequestLife(None)
        policy = policy or StreamPolicy()
        sent = _Stream([])
        last: RouterError | None = None
        down: set[ProviderName] = set()
        for cand in candidates:
            provider = self._providers.get(cand.provider)
            if provider is None or cand.provider in down:
                continue
            messages = intent.messages
            if prompt_prefixes and cand.model in prompt_prefixes:
                messages = with_system_prefix(messages, prompt_prefixes[cand.model])
            if sent.broken is not None:
                messages = continuation.messages_for(messages, sent.text)
            call = ChatCall(
                cand.engine_model,
                messages,
                intent.options,
                intent.request_id,
                continue_final=sent.broken is not None,
                route=intent.route,  # issue 17: the pool sees the request's replicas tried
            )
            breaker = self.breakers[cand.provider]
            for attempt_no in range(1, self._retry.attempts + 1):
                if not breaker.allow():
                    last = _circuit_open(cand, intent.request_id)
                    break
                attempt = life.begin(cand.provider, cand.model)
                before = sent.tokens
                try:
                    async for ev in self._attempt(
                        provider, call, cand, attempt_no, attempt, deadline, life, policy, sent
                    ):
                        yield ev
                    return
                except _Deadline:
                    raise  # no time left for another attempt or a continuation
                except RouterError as err:
                    last = err
                    if sent.tokens > before:  # this attempt streamed text, then failed
                        if not continuation.allowed(
                            policy.continuation,
                            intent.plain_text,
                            sent.tool_call_streamed,
                            sent.text,
                        ):
                            raise
                        sent.broken = err
                        _event("gen_ai.continuation", cand, err)
                        break
                    if not err.retryable or attempt_no == self._retry.attempts:
                        break
                    self._stats.record_retry(cand.provider)
                    _event("gen_ai.retry", cand, err, attempt_no)
                    await self._pause(attempt_no, err, deadline, intent.request_id)
            assert last is not None
            if last.kind is ErrorKind.MODEL_NOT_FOUND:
                continue
            if last.engine_down or last.retryable or sent.broken is last:
                down.add(cand.provider)
                _event("gen_ai.fallback", cand, last)
                continue
            raise sent.broken or last
        if sent.broken is not None:
            raise sent.broken  # nothing could continue it: the stream fails as it broke
        if last is None:
            raise RouterError(
                ErrorKind.LLM_UNAVAILABLE,
                "no configured engine can serve this request",
                request_id=intent.request_id,
            )
        raise last

    async def _attempt(
        self,
        provider: Provider,
        call: ChatCall,
        cand: Candidate,
        attempt_no: int,
        attempt: Attempt,
        deadline: float,
        life: RequestLife,
        policy: StreamPolicy,
        sent: _Stream,
    ) -> AsyncGenerator[Event, None]:
        """One call to one engine; raises ``RouterError`` (already recorded) when it fails."""
        breaker = self.breakers[cand.provider]
        watch = StreamWatch(policy.timeouts.get(cand.provider), deadline)
        stream = provider.stream_chat(call)
        judged = False
        first = True
        before = sent.tokens
        try:
            while True:
                try:
                    chunk = await watch.next(stream.__anext__)
                except StopAsyncIteration:  # providers raise on truncation; defensive
                    raise _truncated(cand) from None
                if first:
                    first = False
                    breaker.first_token()  # a half-open probe that streams closes it now
                    self._stats.record_start(cand.provider, cand.fallback)
                    if not sent.started:
                        sent.started = True
                        yield Started(
                            cand.provider, cand.model, cand.engine_model, cand.fallback, attempt_no
                        )
                    elif sent.broken is not None:
                        yield _continued(sent, cand)
                if chunk.text:
                    watch.progress()
                    life.progress(attempt, chunk.tokens)
                    sent.tokens += chunk.tokens
                    sent.parts.append(chunk.text)
                    yield Text(chunk.text, chunk.tokens)
                if chunk.done:
                    breaker.success()
                    judged = True
                    self._stats.record_success(cand.provider)
                    own = chunk.completion_tokens
                    life.succeed(attempt, chunk.prompt_tokens, own)
                    yield Finished(
                        chunk.finish_reason,
                        chunk.prompt_tokens,
                        None if own is None else own + before,
                    )
                    return
        except StreamTimeout as t:
            judged = True
            if t.which is Expired.DEADLINE:
                outcome = life.deadline(attempt)
                if outcome is Outcome.DEADLINE_SILENT:
                    breaker.failure()
                else:
                    breaker.release()
                self._stats.record_failure(cand.provider, ErrorKind.LLM_TIMEOUT)
                raise _deadline_error(cand, call.request_id) from None
            err = _stream_timeout(t, cand, call.request_id)
            if call.route is not None:  # issue 17: the timeout counts against its replica
                call.route.timed_out()
            first_token = t.which is Expired.FIRST_TOKEN
            outcome = Outcome.FIRST_TOKEN_TIMEOUT if first_token else Outcome.IDLE_TIMEOUT
            self._fail(breaker, err, cand, attempt, life, outcome)
            raise err from None
        except RouterError as err:
            judged = True
            self._fail(breaker, err, cand, attempt, life, Outcome.ENGINE_ERROR)
            _fill(err, cand, call.request_id)
            raise
        finally:
            watch.close()
            if not judged:
                breaker.release()  # cancelled: no verdict on the engine
            await stream.aclose()

    def _fail(
        self,
        breaker: Breaker,
        err: RouterError,
        cand: Candidate,
        attempt: Attempt,
        life: RequestLife,
        outcome: Outcome,
    ) -> None:
        _judge(breaker, err)
        self._stats.record_failure(cand.provider, err.kind)
        life.fail(attempt, err, outcome)

    async def _pause(
        self, attempt_no: int, err: RouterError, deadline: float, request_id: str
    ) -> None:
        """The backoff before the next attempt, within the deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._sleep(self._retry.delay(attempt_no, err.retry_after_s, self._rng))
        except TimeoutError:
            raise RouterError(
                ErrorKind.LLM_TIMEOUT,
                "deadline exceeded between attempts",
                provider=err.provider,
                model=err.model,
                request_id=request_id,
            ) from None

    async def embed(
        self,
        request_id: str,
        inputs: tuple[str, ...],
        candidates: list[Candidate],
        deadline: float,
        life: RequestLife | None = None,
        route: Route | None = None,
    ) -> tuple[Candidate, EmbedOutput]:
        """The first engine that embeds ``inputs``; every attempt goes to ``life``."""
        life = life if life is not None else RequestLife(None)
        last: RouterError | None = None
        down: set[ProviderName] = set()
        try:
            async with asyncio.timeout_at(deadline):
                for cand in candidates:
                    provider = self._providers.get(cand.provider)
                    if provider is None or cand.provider in down:
                        continue
                    # Issue 17: ``route`` carries the replicas tried across attempts.
                    call = EmbedCall(cand.engine_model, inputs, request_id, route=route)
                    breaker = self.breakers[cand.provider]
                    for attempt_no in range(1, self._retry.attempts + 1):
                        if not breaker.allow():
                            last = _circuit_open(cand, request_id)
                            break
                        attempt = life.begin(cand.provider, cand.model)
                        try:
                            out = check_embedding(
                                await provider.embed(call),
                                cand.model,
                                len(inputs),
                                cand.provider,
                                cand.engine_model,
                            )
                        except RouterError as err:
                            self._fail(breaker, err, cand, attempt, life, Outcome.ENGINE_ERROR)
                            _fill(err, cand, request_id)
                            last = err
                            if not err.retryable or attempt_no == self._retry.attempts:
                                break
                            self._stats.record_retry(cand.provider)
                            _event("gen_ai.retry", cand, err, attempt_no)
                            await self._sleep(
                                self._retry.delay(attempt_no, err.retry_after_s, self._rng)
                            )
                        except BaseException:
                            breaker.release()  # cancelled, or the deadline (judged below)
                            raise
                        else:
                            breaker.success()
                            life.succeed(attempt, out.prompt_tokens, 0)
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
            silent = life.open
            provider_name = ""
            if silent is not None:  # the engine never answered: its timeout
                provider_name = silent.provider
                life.deadline(silent)
                self._stats.record_failure(silent.provider, ErrorKind.LLM_TIMEOUT)
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
        raise _as_embedding_error(last)


def _continued(sent: _Stream, cand: Candidate) -> Continued:
    assert sent.broken is not None
    broken = sent.broken
    return Continued(
        broken.provider,  # type: ignore[arg-type]
        broken.kind,
        cand.provider,
        cand.model,
        cand.engine_model,
        len(sent.text),
    )


def _event(name: str, cand: Candidate, err: RouterError, attempt: int = 0) -> None:
    """A retry, fallback or continuation, as an event on the current span (the request's
    ``chat`` span)."""
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


def _stream_timeout(t: StreamTimeout, cand: Candidate, request_id: str) -> RouterError:
    if t.which is Expired.FIRST_TOKEN:
        # Nothing was sent: another attempt, or the fallback engine, may answer.
        return RouterError(
            ErrorKind.LLM_TIMEOUT,
            f"{cand.provider} sent no first token within {t.limit_s:g}s",
            cand.provider,
            cand.model,
            request_id,
            retryable=True,
        )
    return RouterError(
        ErrorKind.LLM_TIMEOUT,
        f"{cand.provider} stalled: no new token for {t.limit_s:g}s",
        cand.provider,
        cand.model,
        request_id,
        retryable=True,
    )


@dataclass
class _Deadline(RouterError):
    """The request's deadline passed: no retry, no fallback, no continuation."""


def _deadline_error(cand: Candidate, request_id: str) -> RouterError:
    return _Deadline(
        ErrorKind.LLM_TIMEOUT,
        "deadline exceeded before the engine finished",
        provider=cand.provider,
        model=cand.model,
        request_id=request_id,
    )


def _truncated(cand: Candidate) -> RouterError:
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{cand.provider} closed the stream before it was complete",
        cand.provider,
        cand.model,
        retryable=True,
    )


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
