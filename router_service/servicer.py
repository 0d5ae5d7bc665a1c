"""RouterService servicer: translates protos to domain calls and domain errors to statuses.

Thin on purpose: what happened to a request is decided in ``dispatch`` and recorded by its
``RequestLife`` (router_service.lifecycle); here only the two things grpc alone knows are added
(the client cancelled, or its deadline passed) and every failure leaves through ``abort``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import grpc
from opentelemetry import trace

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from llmcore.vocabulary import ProviderName, TaskName
from router_service.capabilities import eligible
from router_service.config.holder import ConfigHolder
from router_service.config.routing import RoutingConfig
from router_service.dispatch import (
    Continued,
    Dispatcher,
    Finished,
    Started,
    Text,
    Thinking,
    ToolCalls,
)
from router_service.errors import ErrorKind, RouterError
from router_service.first_tokens import FirstTokens, logprobs_to_proto, tool_call_to_proto
from router_service.grpc_errors import abort
from router_service.lifecycle import RequestLife
from router_service.lifecycle.timeouts import StreamPolicy, resolve
from router_service.placement import plan
from router_service.request_features import with_task_defaults
from router_service.request_stats import RequestStatsRecorder
from router_service.requests import (
    PROVIDER_TO_PROTO,
    Limits,
    continuation_to_proto,
    embed_input,
    generate_input,
    resolve_request_id,
)
from router_service.settings import RouterSettings
from router_service.shadow import ShadowMirror, ShadowTicket
from router_service.telemetry import GenAIObserver
from router_service.values import Route

log = logging.getLogger(__name__)

_FINISH = {
    "stop": router_pb2.FINISH_REASON_STOP,
    "length": router_pb2.FINISH_REASON_LENGTH,
    "tool_calls": router_pb2.FINISH_REASON_TOOL_CALLS,
    "cancelled": router_pb2.FINISH_REASON_CANCELLED,
    "": router_pb2.FINISH_REASON_UNSPECIFIED,
}


GenerateContext = grpc.aio.ServicerContext[router_pb2.GenerateRequest, router_pb2.GenerateResponse]
EmbedContext = grpc.aio.ServicerContext[router_pb2.EmbedRequest, router_pb2.EmbedResponse]


def _metadata(context: GenerateContext | EmbedContext, key: str) -> str | None:
    for k, value in context.invocation_metadata() or ():
        if k == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


class Admission:
    """Caps concurrent requests; beyond the cap a request is shed, not queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(
        self,
        settings: RouterSettings,
        dispatcher: Dispatcher,
        config: ConfigHolder,
        recorder: RequestStatsRecorder,
        status: Callable[[], router_pb2.GetStatusResponse] | None = None,
        shadow: ShadowMirror | None = None,
        observer: GenAIObserver | None = None,
    ) -> None:
        self._settings = settings
        self._obs = observer or GenAIObserver(trace.NoOpTracer())
        self._shadow = shadow
        self._dispatcher = dispatcher
        self._config = config
        self._recorder = recorder
        self.status = status
        self._limits = Limits(
            settings.max_prompt_chars, settings.max_output_tokens, settings.max_embed_inputs
        )
        self.admission = Admission(settings.max_concurrent_requests)

    def _deadline(self, context: GenerateContext | EmbedContext) -> float:
        remaining = context.time_remaining()
        budget = self._settings.default_deadline_s
        if remaining is not None:
            budget = min(budget, remaining)
        return asyncio.get_running_loop().time() + budget

    def _policy(self, cfg: RoutingConfig, task: TaskName) -> StreamPolicy:
        s = self._settings
        return StreamPolicy(
            timeouts=resolve(s.stream_timeouts(), cfg.stream_timeouts, task),
            continuation=s.continuation_enabled and not cfg.continuation_disabled,
            silent_after_s=s.deadline_silent_after_s,
        )

    def _life(self, task: TaskName | None) -> RequestLife:
        return RequestLife(task, self._recorder, self._settings.deadline_silent_after_s)

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: GenerateContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        t0 = time.perf_counter()
        rid = resolve_request_id(request.request_id, _metadata(context, "x-request-id"))
        context.set_trailing_metadata((("x-request-id", rid),))
        life = self._life(None)
        failure: RouterError | None = None
        admitted = False
        answered_by: ProviderName | None = None
        ttft: float | None = None
        firsts = FirstTokens(t0)
        end: router_pb2.GenerateEnd | None = None
        ticket: ShadowTicket | None = None
        continuations: list[router_pb2.Continuation] = []
        try:
            inp = generate_input(request, rid, self._limits)
            life.task = inp.task
            cfg = self._config.current  # one snapshot for the whole request
            candidates = plan(cfg, inp.task, inp.model, inp.provider, inp.routing_key)
            intent = inp.intent
            intent = replace(
                intent,
                features=with_task_defaults(intent.features, cfg.task_defaults.get(inp.task)),
            )
            inp = replace(inp, intent=intent)
            candidates = eligible(candidates, intent.features, intent.messages, cfg.catalog, rid)
            admitted = self.admission.try_enter()
            if not admitted:
                raise _overloaded(rid)
            tokens = 0
            if self._shadow is not None:  # decides now; the shadow runs off this path
                ticket = self._shadow.begin(cfg, inp, candidates)
            # aclosing: a cancelled call must close the engine stream now, not when the
            # suspended generator is garbage-collected.
            events = self._obs.generation(  # the chat span covers the whole stream
                self._dispatcher.generate(
                    inp.intent,
                    candidates,
                    self._deadline(context),
                    cfg.prompt_prefixes,
                    life,
                    self._policy(cfg, inp.task),
                    cfg.catalog.capabilities_of,
                ),
                rid,
                inp.task,
                inp.model,
                candidates,
            )
            async with contextlib.aclosing(events):
                async for ev in events:
                    if isinstance(ev, Text):
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        firsts.answer()
                        tokens += ev.tokens
                        if ticket is not None:  # text is kept for sampled requests only
                            ticket.parts.append(ev.text)
                        delta = router_pb2.TextDelta(text=ev.text)
                        if ev.logprobs:
                            delta.logprobs.extend(logprobs_to_proto(ev.logprobs))
                        yield router_pb2.GenerateResponse(delta=delta)
                        if ticket is not None and not ticket.started:
                            ticket.start()  # the shadow starts once our first delta is out
                    elif isinstance(ev, Thinking):
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        firsts.reasoning(ev.tokens)
                        tokens += ev.tokens
                        if ticket is not None:
                            ticket.reasoning.append(ev.text)
                        yield router_pb2.GenerateResponse(
                            reasoning=router_pb2.ReasoningDelta(text=ev.text)
                        )
                        if ticket is not None and not ticket.started:
                            ticket.start()
                    elif isinstance(ev, ToolCalls):
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        firsts.answer()
                        for frag in ev.fragments:
                            if ticket is not None:
                                ticket.tool_calls.append(frag)
                            yield router_pb2.GenerateResponse(tool_call=tool_call_to_proto(frag))
                        if ticket is not None and not ticket.started:
                            ticket.start()
                    elif isinstance(ev, Started):
                        answered_by = ev.provider
                        yield router_pb2.GenerateResponse(
                            start=router_pb2.GenerateStart(
                                request_id=rid,
                                provider=PROVIDER_TO_PROTO[ev.provider],
                                model=ev.model,
                                engine_model=ev.engine_model,
                                fallback=ev.fallback,
                                attempt=ev.attempt,
                            )
                        )
                    elif isinstance(ev, Continued):
                        answered_by = ev.provider
                        continuations.append(continuation_to_proto(ev))
                    elif isinstance(ev, Finished):
                        end = _end(ev, tokens, t0, ttft)
                        end.continuations.extend(continuations)
                        firsts.fill(end, ev.reasoning_tokens)
                        yield router_pb2.GenerateResponse(end=end)
            return
        except RouterError as err:
            failure = err
        except Exception as exc:  # the one mapping layer: never a bare traceback to the client
            log.exception("generate failed inside the router (request_id=%s)", rid)
            failure = RouterError(ErrorKind.ROUTER_INTERNAL, f"router fault: {type(exc).__name__}")
        finally:
            # The client cancelled, or its deadline passed outside the dispatcher's wait.
            life.finish(deadline_expired=_expired(context))
            if admitted:
                self.admission.leave()
            self._obs.failed("chat", failure)
            if ticket is not None:  # hands over and returns; the comparison runs later
                ticket.finish(
                    answered_by=answered_by,
                    ok=end is not None,
                    failed=failure is not None,
                    ttft_s=ttft,
                    tokens_per_second=end.timings.tokens_per_second if end else 0.0,
                    finish_length=end is not None
                    and end.finish_reason == router_pb2.FINISH_REASON_LENGTH,
                )
        await abort(context, failure, rid)

    async def Embed(
        self, request: router_pb2.EmbedRequest, context: EmbedContext
    ) -> router_pb2.EmbedResponse:
        t0 = time.perf_counter()
        rid = resolve_request_id(request.request_id, _metadata(context, "x-request-id"))
        context.set_trailing_metadata((("x-request-id", rid),))
        life = self._life("embedding")
        admitted = False
        failure: RouterError | None = None
        try:
            inp = embed_input(request, rid, self._limits)
            candidates = plan(
                self._config.current, "embedding", inp.model, inp.provider, inp.routing_key
            )
            admitted = self.admission.try_enter()
            if not admitted:
                raise _overloaded(rid)
            cand, out = await self._obs.embedding(
                self._dispatcher.embed(
                    rid,
                    inp.inputs,
                    candidates,
                    self._deadline(context),
                    life,
                    route=Route(request.routing_key),  # issue 17: placement in a pool
                    dimensions=inp.dimensions,
                    truncate=inp.truncate,
                ),
                rid,
                inp.model,
                candidates,
            )
            return router_pb2.EmbedResponse(
                request_id=rid,
                provider=PROVIDER_TO_PROTO[cand.provider],
                model=cand.model,
                embeddings=[router_pb2.Embedding(values=v) for v in out.vectors],
                prompt_tokens=out.prompt_tokens,
                fallback=cand.fallback,
                total_ms=(time.perf_counter() - t0) * 1000,
            )
        except RouterError as err:
            failure = err
        except Exception as exc:  # the one mapping layer
            log.exception("embed failed inside the router (request_id=%s)", rid)
            failure = RouterError(ErrorKind.ROUTER_INTERNAL, f"router fault: {type(exc).__name__}")
        finally:
            life.finish(deadline_expired=_expired(context))
            if admitted:
                self.admission.leave()
            self._obs.failed("embeddings", failure)
        assert failure is not None
        await abort(context, failure, rid)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    async def GetStatus(
        self,
        request: router_pb2.GetStatusRequest,
        context: grpc.aio.ServicerContext[
            router_pb2.GetStatusRequest, router_pb2.GetStatusResponse
        ],
    ) -> router_pb2.GetStatusResponse:
        if self.status is None:
            return router_pb2.GetStatusResponse(active_requests=self.admission.active)
        return self.status()


def _expired(context: GenerateContext | EmbedContext) -> bool:
    """Whether the client's deadline has passed (else an early end is the client cancelling)."""
    remaining = context.time_remaining()
    return remaining is not None and remaining <= _DEADLINE_SLACK_S


# grpc cancels the call at its deadline; a little slack for the time the cancel takes to land.
_DEADLINE_SLACK_S = 0.05


def _overloaded(rid: str) -> RouterError:
    return RouterError(
        ErrorKind.OVERLOADED,
        "router is at its concurrent request limit",
        request_id=rid,
        retry_after_s=1.0,
    )


def _end(ev: Finished, tokens: int, t0: float, ttft: float | None) -> router_pb2.GenerateEnd:
    total = time.perf_counter() - t0
    completion = ev.completion_tokens if ev.completion_tokens is not None else tokens
    prompt = ev.prompt_tokens or 0
    gen_time = total - (ttft or total)
    tps = (completion - 1) / gen_time if completion > 1 and gen_time > 0 else 0.0
    return router_pb2.GenerateEnd(
        raw_finish_reason=ev.raw_finish_reason,
        stop_sequence=ev.stop_sequence,
        finish_reason=_FINISH[ev.finish_reason],
        usage=router_pb2.Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
        timings=router_pb2.Timings(
            time_to_first_token_ms=(ttft or total) * 1000,
            total_ms=total * 1000,
            tokens_per_second=tps,
        ),
    )
