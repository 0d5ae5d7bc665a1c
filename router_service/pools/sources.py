"""Where a pool's replicas come from, besides the static list: DNS (a Kubernetes headless
service, whose A/AAAA records are the ready pods) re-resolved on an interval.

The resolver is injected (tests); the default is the event loop's ``getaddrinfo``, which runs
in the loop's executor and never blocks it. A failed or empty answer keeps the replicas the
last good answer gave: a DNS hiccup must not empty a pool that is serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from router_service.pools.pool import EnginePool

log = logging.getLogger(__name__)

__all__ = ["DnsSource", "Resolver", "loop_resolver"]

# (host, port) -> the addresses it resolves to now.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def loop_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


class DnsSource:
    """Keeps ``pool``'s ``dns`` replicas equal to what ``url``'s host resolves to."""

    def __init__(
        self,
        pool: EnginePool,
        url: str,
        interval_s: float = 10.0,
        resolver: Resolver = loop_resolver,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"DNS source {url!r}: must be http(s)://NAME:PORT")
        self._pool = pool
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._interval = interval_s
        self._resolve = resolver
        self._task: asyncio.Task[None] | None = None
        self.last: list[str] = []
        self.last_error = ""

    def _url(self, addr: str) -> str:
        host = f"[{addr}]" if ":" in addr else addr
        return f"{self._scheme}://{host}:{self._port}"

    async def refresh(self) -> list[str]:
        """Resolve once and sync the pool; the replica URLs in force afterwards."""
        try:
            addrs = await self._resolve(self._host, self._port)
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("DNS %s: %s; keeping %d replicas", self._host, exc, len(self.last))
            return self.last
        if not addrs:
            self.last_error = "empty answer"
            log.warning("DNS %s: no addresses; keeping %d replicas", self._host, len(self.last))
            return self.last
        urls = sorted(self._url(a) for a in addrs)
        if urls != self.last:
            log.info("DNS %s: replicas %s", self._host, ", ".join(urls))
        self.last, self.last_error = urls, ""
        await self._pool.sync(urls, "dns")
        return urls

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # the loop must never die
                log.exception("DNS refresh failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"dns-{self._host}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
