"""The HTTP edge shared by providers: client construction, line framing, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import orjson

from llmcore.errcap import MAX_ENGINE_MESSAGE, cut
from llmcore.vocabulary import ProviderName
from router_service.errors import ErrorKind, RouterError
from router_service.providers._base import ProviderLimits
from router_service.providers._transport import AiohttpTransport


def build_http_client(
    base_url: str,
    limits: ProviderLimits,
    max_connections: int,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """One pooled client per backend, shared by every request to it.

    httpx's API over aiohttp's I/O (``_transport.py``): httpcore's streaming read was the
    relay's largest cost per token.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(
            connect=limits.connect_timeout_s, read=limits.read_timeout_s, write=10.0, pool=5.0
        ),
        transport=AiohttpTransport(max_connections),
        # Streams are read raw (no content decoding), so ask engines not to compress.
        headers={"accept-encoding": "identity", **(headers or {})},
    )


# The longest NDJSON / SSE line an engine may send: one event is a few hundred bytes; a body
# with no newline at all used to grow the buffer without bound (~22 MB/s per request).
MAX_LINE_BYTES = 1024 * 1024


async def iter_line_batches(
    raw: AsyncIterator[bytes],
    provider: ProviderName | str = "",
    model: str = "",
    max_line_bytes: int = MAX_LINE_BYTES,
) -> AsyncGenerator[list[bytes], None]:
    """Split a byte stream into non-empty lines, one list per network read.

    Splitting bytes ourselves is far cheaper than ``aiter_lines`` (see performance notes), and
    grouping by read gives backpressure-driven coalescing for free: when the relay is behind, one
    read holds many events and they leave as one gRPC message; when it is not, each event leaves
    alone, at once. A line longer than ``max_line_bytes`` is LLM_INVALID_RESPONSE; the pieces of
    an unfinished line are kept apart and joined once (no quadratic copying).
    """
    pending: list[bytes] = []
    pending_len = 0
    async for data in raw:
        if b"\n" not in data:
            pending.append(data)
            pending_len += len(data)
            if pending_len > max_line_bytes:
                raise line_too_long(provider, model, max_line_bytes)
            continue
        if pending:
            data = b"".join((*pending, data))
            pending.clear()
        parts = data.split(b"\n")
        last = parts.pop()
        pending_len = len(last)
        if last:
            pending.append(last)
        if pending_len > max_line_bytes or any(len(p) > max_line_bytes for p in parts):
            raise line_too_long(provider, model, max_line_bytes)
        lines = [p for p in parts if p and not p.isspace()]
        if lines:
            yield lines
    rest = b"".join(pending)
    if rest and not rest.isspace():
        yield [rest]


def line_too_long(provider: ProviderName | str, model: str, limit: int) -> RouterError:
    return RouterError(
        ErrorKind.LLM_INVALID_RESPONSE,
        f"{provider or 'the engine'} sent a stream line longer than {limit} bytes",
        provider,
        model,
    )


async def finish_body(batches: AsyncGenerator[list[bytes], None], timeout_s: float = 1.0) -> None:
    """Read what is left of a stream after its end marker (normally only the chunked-encoding
    terminator, already in the buffer) so that the connection goes back to the pool.

    httpcore closes the connection of a response closed before its body was read to the end, so
    without this every request paid for a new TCP connection (measured: ~7 ms of added time to
    first token at one stream, see docs/performance.md). An engine that keeps the body open past
    its end marker, or breaks it now, only loses the connection: the answer is complete.
    """
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(timeout_s):
            async for _ in batches:
                pass
    await batches.aclose()


def error_message(body: bytes) -> str:
    """The message of an engine error body: Ollama ``{"error": str}``, vLLM nested
    ``{"error": {"message": ...}}`` (v0.10.1+) or flat ``{"object": "error", "message": ...}``."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
    return message_of(obj) or body[:200].decode("utf-8", "replace")


def message_of(obj: Any) -> str | None:
    """The error message inside a decoded engine payload, or None when it is not an error."""
    if not isinstance(obj, dict):
        return None
    err = obj.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if obj.get("object") == "error":
        return str(obj.get("message", "engine error"))
    return None


def status_error(
    status: int, body: bytes, provider: ProviderName, model: str, retry_after: str | None
) -> RouterError:
    """Map a non-2xx engine response to the most specific domain error."""
    msg = f"{provider} returned HTTP {status}: {cut(error_message(body), MAX_ENGINE_MESSAGE)}"
    after = _parse_retry_after(retry_after)
    if status == 404:
        return RouterError(ErrorKind.MODEL_NOT_FOUND, msg, provider, model, http_status=status)
    if status in (400, 413, 422):
        return RouterError(ErrorKind.INVALID_REQUEST, msg, provider, model, http_status=status)
    if status == 408:
        return RouterError(
            ErrorKind.LLM_TIMEOUT, msg, provider, model, retryable=True, http_status=status
        )
    if status == 429:
        return RouterError(
            ErrorKind.LLM_UNAVAILABLE,
            msg,
            provider,
            model,
            retryable=True,
            http_status=status,
            retry_after_s=after,
        )
    if status >= 500:
        return RouterError(
            ErrorKind.LLM_UNAVAILABLE,
            msg,
            provider,
            model,
            retryable=True,
            engine_down=True,
            http_status=status,
            retry_after_s=after,
        )
    return RouterError(ErrorKind.LLM_INVALID_RESPONSE, msg, provider, model, http_status=status)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def transport_error(exc: httpx.HTTPError, provider: ProviderName, model: str) -> RouterError:
    """Map an httpx failure to a domain error, most specific first."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return RouterError(
            ErrorKind.LLM_UNAVAILABLE,
            f"{provider} unreachable: {exc!s}",
            provider,
            model,
            retryable=True,
            engine_down=True,
        )
    if isinstance(exc, httpx.PoolTimeout):
        return RouterError(
            ErrorKind.LLM_UNAVAILABLE,
            f"{provider}: no free connection in the pool",
            provider,
            model,
            retryable=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return RouterError(
            ErrorKind.LLM_TIMEOUT,
            f"{provider} stopped sending ({type(exc).__name__})",
            provider,
            model,
            retryable=True,
        )
    # RemoteProtocolError, ReadError, WriteError: the connection broke.
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{provider} connection broke: {type(exc).__name__}: {exc!s}",
        provider,
        model,
        retryable=True,
    )


def malformed(provider: ProviderName, model: str, line: bytes) -> RouterError:
    return RouterError(
        ErrorKind.LLM_INVALID_RESPONSE,
        f"{provider} sent a malformed stream line ({len(line)} bytes)",
        provider,
        model,
        retryable=True,
    )


def truncated(provider: ProviderName, model: str) -> RouterError:
    return RouterError(
        ErrorKind.LLM_UNAVAILABLE,
        f"{provider} closed the stream before it was complete",
        provider,
        model,
        retryable=True,
    )


def engine_stream_error(provider: ProviderName, model: str, message: str) -> RouterError:
    return RouterError(
        ErrorKind.LLM_INVALID_RESPONSE,
        f"{provider} reported an error mid-stream: {cut(message, MAX_ENGINE_MESSAGE)}",
        provider,
        model,
        retryable=True,
    )


async def probe_get(client: httpx.AsyncClient, path: str, provider: ProviderName) -> None:
    """GET a liveness endpoint with a short timeout; raise ``RouterError`` unless it is 200."""
    try:
        resp = await client.get(path, timeout=2.0)
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider, "") from exc
    if resp.status_code != 200:
        raise status_error(resp.status_code, resp.content, provider, "", None)
