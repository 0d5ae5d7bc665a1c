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

from llmcore.vocabulary import ProviderName
from router_service.attempt_errors import (
    DeadlineExceeded,
    circuit_open,
    deadline_error,
    fill,
    judge,
    span_event,
    stream_timeout_error,
    truncated_error,
)
from router_service.breaker import Breaker, BreakerPolicy, Breakers
from router_service.embed_attempts import embed_attempts
from router_service.errors import ErrorKind, RouterError
from router_service.lifecycle import continuation
from router_service.lifecycle.life import Attempt, RequestLife
from router_service.lifecycle.outcome import Outcome
from router_service.lifecycle.timeouts import StreamPolicy
from router_service.lifecycle.watch import Expired, StreamTimeout, StreamWatch
from router_service.placement import Candidate
from router_service.prompt_policy import with_system_prefix
from router_service.providers import Provider
from router_service.retry import RetryPolicy
from router_service.stats import RouterStats
from router_service.values import (
    NO_FEATURES,
    ChatCall,
    ChatMessage,
    EmbedOutput,
    Features,
    FinishReason,
    Route,
    SamplingOptions,
    TokenLogprob,
    ToolCallFragment,
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
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Thinking:
    """Reasoning tokens, kept apart from the answer."""

    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Tool-call fragments. Once one was sent the request can never fail over."""

    fragments: tuple[ToolCallFragment, ...]


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
    raw_finish_reason: str = ""
    stop_sequence: str = ""
    reasoning_tokens: int | None = None  # the engine's own count, when it gives one


Event = Started | Text | Thinking | ToolCalls | Continued | Finished


def reasoning_on(features: Features, caps: frozenset[str]) -> bool:
    """Whether the model will think: asked for, or left to a model that thinks by default."""
    level = features.reasoning.level
    return features.reasoning.on or (level is None and "thinking" in caps)


@dataclass(frozen=True, slots=True)
class ChatIntent:
    request_id: str
    messages: tuple[ChatMessage, ...]
    options: SamplingOptions
    # Reasoning, response format, tools, engine options. ``features.constrained`` requests are
    # retried only as fresh requests and never continued on another engine mid-answer.
    features: Features = NO_FEATURES
    # Issue 17 (engine pools): the request's placement context, on every call it makes.
    route: Route | None = None

    @property
    def plain_text(self) -> bool:
        """A plain-text answer: the only kind continuation may resume on another engine. A
        response format or tools make it False."""
        return not self.features.constrained


@dataclass(slots=True)
class _Stream:
    """What the client has been sent so far, across attempts."""

    parts: list[str]
    tokens: int = 0
    started: bool = False  # a Started event went out
    tool_call_streamed: bool = False  # a tool-call delta went out: never a failover after it
    # Tokens of any kind sent (reasoning, text, tool calls): the first one ends retries.
    events: int = 0
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
        self.providers = providers
        self.retry = retry
        self.stats = stats
        self.breakers = breakers or Breakers(BreakerPolicy())
        self.rng = rng or random.Random()
        self.sleep = sleep or asyncio.sleep

    async def generate(
        self,
        intent: ChatIntent,
        candidates: list[Candidate],
        deadline: float,
        prompt_prefixes: Mapping[str, str] | None = None,
        life: RequestLife | None = None,
        policy: StreamPolicy | None = None,
        capabilities: Callable[[str], frozenset[str]] | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Events of the answering attempt(s). ``deadline`` is ``loop.time()``-based;
        ``prompt_prefixes`` maps a logical model to the system prefix its policy adds; ``life``
        gets every attempt (a throwaway one when None); ``policy`` bounds the streams and
        allows continuation (None: only the deadline, no continuation); ``capabilities`` gives
        a logical model's catalogue capabilities.

        A token of any kind (reasoning, text, a tool call) is the first token: after it an
        attempt that fails is never retried (a retry before it is a fresh request, which is what
        a JSON- or tool-constrained request needs), and only a plain-text answer may be
        continued elsewhere, never one with a tool-call delta sent."""
        life = life if life is not None else RequestLife(None)
        policy = policy or StreamPolicy()
        sent = _Stream([])
        last: RouterError | None = None
        down: set[ProviderName] = set()
        for cand in candidates:
            provider = self.providers.get(cand.provider)
            if provider is None or cand.provider in down:
                continue
            messages = intent.messages
            caps = capabilities(cand.model) if capabilities else frozenset()
            # The prompt policy (Chain-of-Draft) exists to shorten thinking: only when the
            # model thinks.
            if (
                prompt_prefixes
                and cand.model in prompt_prefixes
                and reasoning_on(intent.features, caps)
            ):
                messages = with_system_prefix(messages, prompt_prefixes[cand.model])
            if sent.broken is not None:
                messages = continuation.messages_for(messages, sent.text)
            call = ChatCall(
                cand.engine_model,
                messages,
                intent.options,
                intent.request_id,
                features=intent.features,
                capabilities=caps,
                continue_final=sent.broken is not None,
                route=intent.route,  # issue 17: the pool sees the request's replicas tried
            )
            breaker = self.breakers[cand.provider]
            for attempt_no in range(1, self.retry.attempts + 1):
                if not breaker.allow():
                    last = circuit_open(cand, intent.request_id)
                    break
                attempt = life.begin(cand.provider, cand.model)
                before = sent.events
                try:
                    async for ev in self._attempt(
                        provider, call, cand, attempt_no, attempt, deadline, life, policy, sent
                    ):
                        yield ev
                    return
                except DeadlineExceeded:
                    raise  # no time left for another attempt or a continuation
                except RouterError as err:
                    last = err
                    if sent.events > before:  # this attempt streamed tokens, then failed
                        if not continuation.allowed(
                            policy.continuation,
                            intent.plain_text,
                            sent.tool_call_streamed,
                            sent.text,
                        ):
                            raise
                        sent.broken = err
                        span_event("gen_ai.continuation", cand, err)
                        break
                    if not err.retryable or attempt_no == self.retry.attempts:
                        break
                    self.stats.record_retry(cand.provider)
                    span_event("gen_ai.retry", cand, err, attempt_no)
                    await self._pause(attempt_no, err, deadline, intent.request_id)
            assert last is not None
            if last.kind is ErrorKind.MODEL_NOT_FOUND:
                continue
            if last.engine_down or last.retryable or sent.broken is last:
                down.add(cand.provider)
                span_event("gen_ai.fallback", cand, last)
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
                    raise truncated_error(cand) from None
                if first:
                    first = False
                    breaker.first_token()  # a half-open probe that streams closes it now
                    self.stats.record_start(cand.provider, cand.fallback)
                    if not sent.started:
                        sent.started = True
                        yield Started(
                            cand.provider, cand.model, cand.engine_model, cand.fallback, attempt_no
                        )
                    elif sent.broken is not None:
                        yield _continued(sent, cand)
                if chunk.reasoning:
                    watch.progress()  # thinking is progress: a first-token clock counts it
                    life.progress(attempt, chunk.reasoning_tokens)
                    sent.events += max(chunk.reasoning_tokens, 1)
                    yield Thinking(chunk.reasoning, chunk.reasoning_tokens)
                if chunk.text:
                    watch.progress()
                    life.progress(attempt, chunk.tokens)
                    sent.tokens += chunk.tokens
                    sent.events += max(chunk.tokens, 1)
                    sent.parts.append(chunk.text)
                    yield Text(chunk.text, chunk.tokens, tuple(chunk.logprobs))
                if chunk.tool_calls:
                    watch.progress()
                    life.progress(attempt, len(chunk.tool_calls))
                    sent.tool_call_streamed = True
                    sent.events += len(chunk.tool_calls)
                    yield ToolCalls(tuple(chunk.tool_calls))
                if chunk.done:
                    breaker.success()
                    judged = True
                    self.stats.record_success(cand.provider)
                    own = chunk.completion_tokens
                    life.succeed(attempt, chunk.prompt_tokens, own)
                    yield Finished(
                        chunk.finish_reason,
                        chunk.prompt_tokens,
                        None if own is None else own + before,
                        chunk.raw_finish_reason,
                        chunk.stop_sequence,
                        chunk.usage_reasoning_tokens,
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
                self.stats.record_failure(cand.provider, ErrorKind.LLM_TIMEOUT)
                raise deadline_error(cand, call.request_id) from None
            err = stream_timeout_error(t, cand, call.request_id)
            if call.route is not None:  # issue 17: the timeout counts against its replica
                call.route.timed_out()
            first_token = t.which is Expired.FIRST_TOKEN
            outcome = Outcome.FIRST_TOKEN_TIMEOUT if first_token else Outcome.IDLE_TIMEOUT
            self.fail(breaker, err, cand, attempt, life, outcome)
            raise err from None
        except RouterError as err:
            judged = True
            self.fail(breaker, err, cand, attempt, life, Outcome.ENGINE_ERROR)
            fill(err, cand, call.request_id)
            raise
        finally:
            watch.close()
            if not judged:
                breaker.release()  # cancelled: no verdict on the engine
            await stream.aclose()

    def fail(
        self,
        breaker: Breaker,
        err: RouterError,
        cand: Candidate,
        attempt: Attempt,
        life: RequestLife,
        outcome: Outcome,
    ) -> None:
        judge(breaker, err)
        self.stats.record_failure(cand.provider, err.kind)
        life.fail(attempt, err, outcome)

    async def _pause(
        self, attempt_no: int, err: RouterError, deadline: float, request_id: str
    ) -> None:
        """The backoff before the next attempt, within the deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                await self.sleep(self.retry.delay(attempt_no, err.retry_after_s, self.rng))
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
        dimensions: int | None = None,
        truncate: bool = True,
    ) -> tuple[Candidate, EmbedOutput]:
        """The first engine that embeds ``inputs``; every attempt goes to ``life``."""
        return await embed_attempts(
            self,
            request_id,
            inputs,
            candidates,
            deadline,
            life or RequestLife(None),
            route,
            dimensions,
            truncate,
        )


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
