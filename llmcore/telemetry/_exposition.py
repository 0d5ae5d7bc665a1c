"""A Prometheus scrape endpoint (``GET /metrics``) for one ``CollectorRegistry``, served by
aiohttp on the service's own event loop: collectors read live asyncio state at scrape time, so
they must run on that loop, not on prometheus_client's server thread."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


@dataclass
class MetricsServer:
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int | None
) -> MetricsServer | None:
    """Serve ``registry`` on ``host:port`` (0 picks a free port); None or negative: off."""
    if port is None or port < 0:
        return None

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return MetricsServer(runner, int(bound))
