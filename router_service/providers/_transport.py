"""httpx's interface over aiohttp's I/O: the transport of the engines' pooled clients.

The providers keep httpx's API (requests, responses, ``MockTransport`` in tests, the error
mapping in ``_http.py``); only the bytes move through aiohttp, whose C parser and stream reader
cost a fraction of httpcore + h11 + anyio per request and per read (profiles and figures in
docs/performance.md; shared/reference/performance-notes.md measured the same on its relay).

Semantics kept from httpx's own transport:
- ``max_connections`` requests in flight at most; one more waits up to the ``pool`` timeout,
  then fails with ``httpx.PoolTimeout``.
- ``connect`` / ``read`` timeouts from the request's ``timeout`` extension (``read`` is the
  longest silence between two reads, as in httpcore).
- Closing a response before its body ends closes its connection (that is how the engine learns
  the client left and aborts the generation); a body read to the end returns the connection to
  the pool. Idle connections are dropped after ``keepalive_s`` (below uvicorn's 5 s, so vLLM
  never closes a connection just as we reuse it).
- aiohttp's exceptions become the most specific httpx exception, in the response stream too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import yarl

# Headers aiohttp computes itself from the URL and the body.
_HOP_BY_HOP = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


@functools.lru_cache(maxsize=256)
def _yarl(url: str) -> yarl.URL:
    """A provider calls a handful of URLs: parse each once."""
    return yarl.URL(url, encoded=True)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (created on first use, inside the running loop) per client."""

    def __init__(self, max_connections: int, keepalive_s: float = 4.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._slots: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # The semaphore bounds connections; the connector only pools them.
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=self._keepalive_s),
                auto_decompress=False,  # httpx decodes, as with its own transport
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t: dict[str, float | None] = request.extensions.get("timeout") or {}
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        slots = self._slots
        try:
            async with asyncio.timeout(t.get("pool")):
                await slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection in the pool", request=request) from exc
        try:
            body = await request.aread()
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.headers.raw
                if k.lower() not in _HOP_BY_HOP
            ]
            try:
                resp = await self._session_now().request(
                    request.method,
                    _yarl(str(request.url)),
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=t.get("connect"), sock_read=t.get("read")
                    ),
                )
            except aiohttp.ClientError as exc:
                raise _map(exc, request) from exc
        except BaseException:
            slots.release()
            raise
        return httpx.Response(
            status_code=resp.status,
            headers=resp.raw_headers,
            stream=_Body(resp, request, slots),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (resp.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp reads it: whatever one read returned, no copies."""

    def __init__(
        self, resp: aiohttp.ClientResponse, request: httpx.Request, slots: asyncio.Semaphore
    ) -> None:
        self._resp = resp
        self._request = request
        self._slots: asyncio.Semaphore | None = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except aiohttp.ClientError as exc:
            raise _map(exc, self._request) from exc

    async def aclose(self) -> None:
        if self._slots is None:
            return
        slots, self._slots = self._slots, None
        try:
            if self._resp.content.at_eof():
                self._resp.release()  # back to the pool
            else:
                self._resp.close()  # tells the engine we left
        finally:
            slots.release()


def _map(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception httpcore would have raised, most specific first."""
    msg = str(exc) or type(exc).__name__
    cls: Any
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        cls = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        cls = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        cls = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        cls = httpx.RemoteProtocolError
    else:
        cls = httpx.ReadError
    err: httpx.TransportError = cls(msg, request=request)
    return err
