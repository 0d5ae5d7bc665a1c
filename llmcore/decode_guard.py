"""Malformed requests become INVALID_ARGUMENT with one log line, not UNKNOWN and a traceback.

grpc parses each request with the handler's ``request_deserializer``; when that raises
(truncated protobuf, a wrong wire type, invalid UTF-8 in a string field) grpc answers UNKNOWN
and logs a full ERROR traceback per call: a cheap way to flood the log. This server interceptor
swaps in a deserializer that returns a marker instead of raising, and the handler answers the
marker with INVALID_ARGUMENT ("not a valid <Message>") before any other work. The log gets one
WARNING per ``every_s`` seconds saying how many were refused, with the method escaped.

Put it last in the server's interceptor list, so it wraps the real handler and every other
interceptor (auth first of all) sees its deserializer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from llmcore.handlers import Context, GuardInterceptor, Handler, guarded
from llmcore.logsafe import safe


class Undecodable:
    """What the guarded deserializer returns for bytes that do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class RateLimitedLog:
    """At most one line per ``every_s``; the lines in between are counted into the next one."""

    def __init__(
        self,
        log: logging.Logger,
        every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._every_s = every_s
        self._clock = clock
        self._last = -float("inf")
        self.suppressed = 0
        self.total = 0

    def warning(self, message: str) -> None:
        self.total += 1
        now = self._clock()
        if now - self._last < self._every_s:
            self.suppressed += 1
            return
        extra = f" (and {self.suppressed} more since the last report)" if self.suppressed else ""
        self._last, self.suppressed = now, 0
        self._log.warning("%s%s", message, extra)


class DecodeGuard(GuardInterceptor):
    def __init__(self, log: logging.Logger, every_s: float = 10.0) -> None:
        self.log = RateLimitedLog(log, every_s)

    def guard(self, handler: Handler, method: str) -> Handler:
        if handler.request_deserializer is None:
            return handler
        return _guard(handler, method, self.log)


def _guard(handler: Handler, method: str, log: RateLimitedLog) -> Handler:
    parse = handler.request_deserializer
    assert parse is not None
    kind = getattr(parse, "__self__", None)
    name = kind.__name__ if isinstance(kind, type) else "request"

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except Exception as exc:  # noqa: BLE001 - every parse failure is the client's
            return Undecodable(f"{type(exc).__name__}: {exc}")

    async def refuse(context: Context, bad: Undecodable) -> None:
        log.warning(f"refused an undecodable request to {safe(method)}: {safe(bad.error)}")
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {name} message (malformed protobuf or invalid UTF-8)",
        )

    async def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for msg in requests:
            if isinstance(msg, Undecodable):
                await refuse(context, msg)
            yield msg

    async def before(request: Any, context: Context) -> Any:
        if handler.request_streaming:
            return checked(request, context)
        if isinstance(request, Undecodable):
            await refuse(context, request)
        return request

    return guarded(handler, before, deserialize)
