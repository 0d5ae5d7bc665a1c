"""The request lifecycle shared by both flavours: faults, admission, prefill, paced token stream.

The per-token path is kept lean: tokens that are due at the same moment are encoded and written
as one batch (so with zero inter-token latency a stream costs a few microseconds per token), and
the flavour-specific ``Format`` only concatenates pre-encoded bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from llmsim._engine import ModelEngine, Seq
from llmsim._faults import FaultPlan
from llmsim._scheduler import QueueFull
from llmsim._state import SimStats

__all__ = ["ErrorFormat", "Format", "GenResult", "Job", "run_job", "run_prefill"]

MAX_BATCH = 256


@dataclass(slots=True)
class GenResult:
    """What happened, for the final chunk / usage block."""

    n_prompt: int
    finish_reason: str
    stop_reason: str | None
    t_arrival: float
    wall_arrival: float
    n_cached: int = 0
    n_out: int = 0
    t_admitted: float = 0.0
    t_first: float = 0.0
    t_last: float = 0.0
    load_s: float = 0.0


class ErrorFormat(Protocol):
    def error_response(self, status: int, kind: str) -> web.Response:
        """Pre-stream error in the engine's format; kind is injected, busy or midstream."""
        ...


class Format(ErrorFormat, Protocol):
    """How one endpoint of one flavour puts a generation on the wire."""

    content_type: str
    eager_headers: bool

    def head(self, res: GenResult) -> bytes: ...
    def tokens(self, toks: Sequence[str], start: int, end: int, res: GenResult) -> bytes: ...
    def tail(self, res: GenResult) -> bytes: ...
    def midstream_error(self) -> bytes: ...
    def malformed(self) -> bytes: ...
    def full_body(self, toks: Sequence[str], res: GenResult) -> web.Response: ...


@dataclass(slots=True)
class Job:
    engine: ModelEngine
    prompt_tokens: list[str]
    tokens: list[str]
    finish_reason: str
    stop_reason: str | None
    plan: FaultPlan
    stream: bool
    log: dict[str, Any]
    manage_residency: bool = False
    keep_alive_s: float | None = None


async def run_job(
    request: web.Request, stats: SimStats, job: Job, fmt: Format
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    eng = job.engine
    plan = job.plan
    res = GenResult(
        n_prompt=len(job.prompt_tokens),
        finish_reason=job.finish_reason,
        stop_reason=job.stop_reason,
        t_arrival=loop.time(),
        wall_arrival=time.time(),
    )
    try:
        if plan.latency_ms:
            await asyncio.sleep(plan.latency_ms / 1000.0)
        if plan.error_status is not None:
            stats.errors_total += 1
            return _logged(job.log, fmt.error_response(plan.error_status, "injected"))
        try:
            await eng.admission.acquire()
        except QueueFull:
            stats.rejected_total += 1
            return _logged(job.log, fmt.error_response(503, "busy"))
    except asyncio.CancelledError:
        stats.aborted_total += 1
        job.log["status"] = "aborted"
        raise
    seq = Seq(res.n_prompt)
    eng.active.add(seq)
    try:
        return await _generate(request, loop, stats, job, fmt, res, seq)
    finally:
        eng.active.discard(seq)
        if job.manage_residency:
            eng.keep_alive(loop.time(), job.keep_alive_s)
        eng.admission.release()


async def _generate(
    request: web.Request,
    loop: asyncio.AbstractEventLoop,
    stats: SimStats,
    job: Job,
    fmt: Format,
    res: GenResult,
    seq: Seq,
) -> web.StreamResponse:
    eng = job.engine
    metrics = eng.metrics
    now = loop.time()
    res.t_admitted = now
    metrics.queue_time.observe(now - res.t_arrival)
    if job.manage_residency:
        res.load_s = eng.ensure_loaded(now)
    if eng.prefix_cache is not None and job.prompt_tokens:
        res.n_cached = eng.prefix_cache.lookup_and_insert(eng.spec.name, job.prompt_tokens)
        metrics.prefix_queries += res.n_prompt
        metrics.prefix_hits += res.n_cached
    metrics.prompt_tokens += res.n_prompt
    due = eng.begin_prefill(now + res.load_s, res.n_prompt - res.n_cached)
    due += job.plan.slow_first_token_ms / 1000.0
    seen_stall = eng.stall_s  # later prefills on this model delay our next token
    log = job.log
    log["prompt_tokens"] = res.n_prompt
    log["cached_tokens"] = res.n_cached
    log["planned_ttft_ms"] = round((due - res.t_arrival) * 1000.0, 3)

    toks = job.tokens
    n = len(toks)
    events = job.plan.events(n)
    n_events = len(events)
    ev = 0
    stream = job.stream
    resp = web.StreamResponse(headers={"Content-Type": fmt.content_type})
    buf: list[bytes] = []
    i = 0
    last_emit = 0.0
    itl = metrics.itl
    try:
        if stream and fmt.eager_headers:
            await resp.prepare(request)
        while True:
            while ev < n_events and events[ev][0] == i:
                kind = events[ev][1]
                ev += 1
                if kind == "malformed":
                    if stream:
                        buf.append(fmt.malformed())
                        continue
                    return _logged(log, _malformed_body())
                if buf:
                    await _flush(request, resp, buf)
                res.n_out = i
                if kind == "midstream_error":
                    return await _midstream_error(request, stats, job, fmt, res, resp)
                if kind == "disconnect":
                    return await _disconnect(request, stats, job, res, resp, stream)
                log["status"] = "stalled"
                await loop.create_future()  # until the client gives up (cancellation)
            if i >= n:
                break
            limit = events[ev][0] if ev < n_events else n
            now = loop.time()
            slept = due > now
            if slept:
                await asyncio.sleep(due - now)
                now = loop.time()
            if i == 0:
                res.t_first = now
                if stream:
                    buf.append(fmt.head(res))
            else:
                itl.observe(now - last_emit)
            j = i
            while True:
                j += 1
                due += eng.step_s()
                if eng.stall_s != seen_stall:
                    due += eng.stall_s - seen_stall
                    seen_stall = eng.stall_s
                if j >= limit or due > now or j - i >= MAX_BATCH:
                    break
            if j - i > 1:
                itl.observe(0.0, j - i - 1)
            last_emit = now
            if stream:
                buf.append(fmt.tokens(toks, i, j, res))
                await _flush(request, resp, buf)
            i = j
            seq.generated = i
            if not slept:
                await asyncio.sleep(0)  # let other streams (and cancellation) in
        if n == 0:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            res.t_first = loop.time()
            if stream:
                buf.append(fmt.head(res))
        res.n_out = n
        res.t_last = last_emit or res.t_first
        _count_finished(stats, job, res)
        if not stream:
            return _logged(log, fmt.full_body(toks, res))
        buf.append(fmt.tail(res))
        await _flush(request, resp, buf)
        await resp.write_eof()
        return _logged(log, resp)
    except (asyncio.CancelledError, ConnectionError) as exc:
        # Client went away: stop at once, free the seat (caller), count it like vLLM's abort.
        res.n_out = i
        stats.aborted_total += 1
        stats.tokens_total += i
        metrics.success["abort"] += 1
        metrics.generation_tokens += i
        log["status"] = "aborted"
        log["completion_tokens"] = i
        if isinstance(exc, asyncio.CancelledError):
            raise
        return resp  # a write failed: aiohttp's own write_eof fails quietly the same way


async def _flush(request: web.Request, resp: web.StreamResponse, buf: list[bytes]) -> None:
    if not resp.prepared:
        await resp.prepare(request)
    data = buf[0] if len(buf) == 1 else b"".join(buf)
    buf.clear()
    await resp.write(data)


def _count_finished(stats: SimStats, job: Job, res: GenResult) -> None:
    m = job.engine.metrics
    m.success[res.finish_reason] = m.success.get(res.finish_reason, 0) + 1
    m.generation_tokens += res.n_out
    m.ttft.observe(res.t_first - res.t_arrival)
    m.e2e.observe(asyncio.get_running_loop().time() - res.t_arrival)
    stats.tokens_total += res.n_out
    job.log["completion_tokens"] = res.n_out
    job.log["finish_reason"] = res.finish_reason


async def _midstream_error(
    request: web.Request,
    stats: SimStats,
    job: Job,
    fmt: Format,
    res: GenResult,
    resp: web.StreamResponse,
) -> web.StreamResponse:
    stats.errors_total += 1
    stats.tokens_total += res.n_out
    job.engine.metrics.generation_tokens += res.n_out
    job.log["completion_tokens"] = res.n_out
    if not job.stream or not resp.prepared:
        # Nothing on the wire yet: the engine answers with a proper error status instead.
        return _logged(job.log, fmt.error_response(500, "midstream"))
    await resp.write(fmt.midstream_error())
    await resp.write_eof()
    job.log["status"] = "midstream_error"
    return resp


async def _disconnect(
    request: web.Request,
    stats: SimStats,
    job: Job,
    res: GenResult,
    resp: web.StreamResponse,
    stream: bool,
) -> web.StreamResponse:
    stats.errors_total += 1
    stats.tokens_total += res.n_out
    job.engine.metrics.generation_tokens += res.n_out
    job.log["status"] = "disconnected"
    job.log["completion_tokens"] = res.n_out
    if stream and not resp.prepared:
        await resp.prepare(request)
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes what was written, then FIN: an incomplete body
    return resp


def _malformed_body() -> web.Response:
    return web.Response(body=b'{"model": "sim", "broken', content_type="application/json")


def _logged(log: dict[str, Any], resp: web.StreamResponse) -> web.StreamResponse:
    if log.get("status") is None:
        log["status"] = resp.status
    return resp


async def run_prefill(
    request: web.Request,
    stats: SimStats,
    eng: ModelEngine,
    n_tokens: int,
    plan: FaultPlan,
    log: dict[str, Any],
    fmt: ErrorFormat,
    *,
    manage_residency: bool = False,
    keep_alive_s: float | None = None,
) -> web.StreamResponse | GenResult:
    """An embedding request: faults, a seat, prefill time. Returns timings or the response to send.

    Token-position faults fire "after 0 tokens": there is no stream to interrupt.
    """
    loop = asyncio.get_running_loop()
    res = GenResult(
        n_prompt=n_tokens,
        finish_reason="stop",
        stop_reason=None,
        t_arrival=loop.time(),
        wall_arrival=time.time(),
    )
    try:
        if plan.latency_ms:
            await asyncio.sleep(plan.latency_ms / 1000.0)
        if plan.error_status is not None:
            stats.errors_total += 1
            return _logged(log, fmt.error_response(plan.error_status, "injected"))
        try:
            await eng.admission.acquire()
        except QueueFull:
            stats.rejected_total += 1
            return _logged(log, fmt.error_response(503, "busy"))
    except asyncio.CancelledError:
        stats.aborted_total += 1
        log["status"] = "aborted"
        raise
    try:
        now = loop.time()
        res.t_admitted = now
        if manage_residency:
            res.load_s = eng.ensure_loaded(now)
        due = eng.begin_prefill(now + res.load_s, n_tokens) + plan.slow_first_token_ms / 1000.0
        log["prompt_tokens"] = n_tokens
        await asyncio.sleep(max(0.0, due - loop.time()))
        res.t_first = res.t_last = loop.time()
        eng.metrics.prompt_tokens += n_tokens
        for _, kind in plan.events(0):
            if kind == "malformed":
                return _logged(log, _malformed_body())
            if kind == "midstream_error":
                stats.errors_total += 1
                return _logged(log, fmt.error_response(500, "midstream"))
            if kind == "disconnect":
                stats.errors_total += 1
                log["status"] = "disconnected"
                if request.transport is not None:
                    request.transport.close()
                return web.StreamResponse()
            log["status"] = "stalled"
            await loop.create_future()
        log["status"] = 200
        return res
    except asyncio.CancelledError:
        stats.aborted_total += 1
        log["status"] = "aborted"
        raise
    finally:
        if manage_residency:
            eng.keep_alive(loop.time(), keep_alive_s)
        eng.admission.release()
