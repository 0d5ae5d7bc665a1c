"""Building and running one simulator: object graph, aiohttp runner, listening socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

from aiohttp import web

from llmsim._admin import AdminApi
from llmsim._config import Flavor, SimConfig
from llmsim._engine import ModelEngine
from llmsim._faults import Faults
from llmsim._ollama import OllamaApi, canonical_name
from llmsim._prefix_cache import PrefixCache
from llmsim._scheduler import Admission
from llmsim._state import RequestLog, SimContext, SimStats
from llmsim._vllm import VllmApi

__all__ = ["RunningSimulator", "simulator", "start_simulator"]

_log = logging.getLogger("llmsim")
_MAX_BODY = 64 * 1024 * 1024


def _build_context(cfg: SimConfig) -> SimContext:
    timing = cfg.timing()
    rng = random.Random(cfg.seed)
    engines: dict[str, ModelEngine] = {}
    ollama = cfg.flavor is Flavor.OLLAMA

    def queue_room() -> bool:  # Ollama's queue limit is global across models
        return sum(e.admission.waiting for e in engines.values()) < cfg.max_queue

    for spec in cfg.catalogue():
        name = canonical_name(spec.name) if ollama else spec.name
        if name in engines:
            raise ValueError(f"duplicate model in catalogue: {name}")
        admission = (
            Admission(timing.num_parallel, queue_room) if ollama else Admission(cfg.max_num_seqs)
        )
        cache = (
            PrefixCache(cfg.block_size, cfg.kv_cache_blocks)
            if not ollama and cfg.enable_prefix_caching
            else None
        )
        engines[name] = ModelEngine(
            spec,
            timing,
            admission,
            rng=rng,
            prefix_cache=cache,
            kv_blocks=cfg.kv_cache_blocks,
            block_size=cfg.block_size,
        )
    if not engines:
        raise ValueError("the model catalogue is empty")
    faults = Faults.model_validate(cfg.faults.model_dump())
    return SimContext(
        config=cfg,
        timing=timing,
        faults=faults,
        stats=SimStats(engines.values()),
        log=RequestLog(cfg.request_log_size),
        engines=engines,
        rng=rng,
    )


class RunningSimulator:
    """A started simulator. ``faults`` and ``stats`` are live; ``stop()`` shuts it down."""

    def __init__(self, ctx: SimContext, runner: web.AppRunner, site: web.TCPSite) -> None:
        self._ctx = ctx
        self._runner = runner
        self._site: web.TCPSite | None = site
        self.host = ctx.config.host
        self.port = site.port
        self._kick = asyncio.Event()
        self._restore: asyncio.TimerHandle | None = None
        self._stopped = False
        ctx.faults.add_listener(self._on_fault_change)
        self._reconciler = asyncio.get_running_loop().create_task(self._reconcile())
        if ctx.faults.refuse_connections:
            self._kick.set()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def config(self) -> SimConfig:
        return self._ctx.config

    @property
    def context(self) -> SimContext:
        return self._ctx

    @property
    def faults(self) -> Faults:
        return self._ctx.faults

    @property
    def stats(self) -> SimStats:
        return self._ctx.stats

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._ctx.faults.remove_listener(self._on_fault_change)
        if self._restore is not None:
            self._restore.cancel()
        self._reconciler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reconciler
        await self._runner.cleanup()
        self._site = None

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- refuse_connections: close and reopen the listening socket --------------------------
    def _on_fault_change(self, name: str) -> None:
        if name in ("refuse_connections", "refuse_connections_ms"):
            self._kick.set()

    async def _reconcile(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            refuse = self._ctx.faults.refuse_connections
            if refuse and self._site is not None:
                await self._site.stop()
                self._site = None
                server = self._runner.server
                for conn in server.connections if server is not None else []:
                    conn.close()  # keep-alive connections go too, after their current request
                _log.info("sim: refusing connections on port %d", self.port)
            elif not refuse and self._site is not None:
                pass
            elif not refuse:
                site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
                try:
                    await site.start()
                except OSError as exc:
                    _log.warning("sim: cannot listen again on %d (%s); retrying", self.port, exc)
                    await site.stop()
                    asyncio.get_running_loop().call_later(0.1, self._kick.set)
                    continue
                self._site = site
                _log.info("sim: accepting connections on port %d again", self.port)
            if self._restore is not None:
                self._restore.cancel()
                self._restore = None
            ms = self._ctx.faults.refuse_connections_ms
            if refuse and ms > 0:
                self._restore = asyncio.get_running_loop().call_later(ms / 1000.0, self._unrefuse)

    def _unrefuse(self) -> None:
        self._restore = None
        self._ctx.faults.refuse_connections = False


async def start_simulator(config: SimConfig) -> RunningSimulator:
    """Build the simulator described by ``config`` and start listening (port 0 = any free port)."""
    ctx = _build_context(config)
    app = web.Application(client_max_size=_MAX_BODY)
    api = OllamaApi(ctx) if config.flavor is Flavor.OLLAMA else VllmApi(ctx)
    app.add_routes([*AdminApi(ctx).routes(), *api.routes()])
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a client that goes away cancels its generation
        access_log=None,
        shutdown_timeout=config.shutdown_grace_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningSimulator(ctx, runner, site)


@contextlib.asynccontextmanager
async def simulator(config: SimConfig) -> AsyncIterator[RunningSimulator]:
    """``async with simulator(cfg) as sim: ...``"""
    sim = await start_simulator(config)
    try:
        yield sim
    finally:
        await sim.stop()
