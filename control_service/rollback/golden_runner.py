"""Runs the golden queries through a router, pinned to vLLM (``provider="vllm"``: the router
honours a pin strictly, so an answer is vLLM's or the query fails), with the typed client
library. The checks themselves are :func:`control_service.rollback.golden.check_answer`.

A router that cannot be reached (an error without the router's ``ErrorInfo``, other than the
query's own deadline) makes the run unusable (``GoldenRun.problem``: INCONCLUSIVE), never a
failed query: telemetry loss holds, it does not decide.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from clients.llm import Provider, RouterClient, RouterError
from control_service.rollback.golden import (
    GoldenFileError,
    GoldenQuery,
    GoldenRun,
    QueryResult,
    check_answer,
    loads,
)
from control_service.rollback.golden_content import answer_only

log = logging.getLogger(__name__)


class _Unreachable(Exception):
    pass


class GoldenRunner:
    def __init__(
        self,
        queries_file: Path | None,
        router_address: str,
        *,
        timeout_s: float = 60.0,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queries_file = queries_file
        self.router_address = router_address
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._clock = clock

    async def load(self) -> tuple[GoldenQuery, ...]:
        """The queries of the configured file; GoldenFileError (or OSError) when unusable."""
        if self.queries_file is None:
            raise GoldenFileError("no golden_queries_file is configured")
        text = await asyncio.to_thread(self.queries_file.read_text)
        return loads(text)

    async def run(self) -> GoldenRun:
        started = self._clock()
        try:
            queries = await self.load()
        except (GoldenFileError, OSError) as exc:
            where = f"{self.queries_file}: " if self.queries_file is not None else ""
            return GoldenRun(started, problem=f"{where}{exc}")
        if not self.router_address:
            return GoldenRun(started, problem="no golden_router_address is configured")
        gate = asyncio.Semaphore(self._concurrency)
        async with RouterClient(self.router_address, timeout=self._timeout_s) as client:

            async def one(q: GoldenQuery) -> QueryResult:
                async with gate:
                    return await self._one(client, q)

            try:
                results = await asyncio.gather(*(one(q) for q in queries))
            except _Unreachable as exc:
                return GoldenRun(started, problem=str(exc))
        run = GoldenRun(started, tuple(results))
        log.info(
            "golden queries: %d/%d passed on vLLM",
            len(results) - len(run.failed),
            len(results),
        )
        return run

    async def _one(self, client: RouterClient, q: GoldenQuery) -> QueryResult:
        t0 = time.perf_counter()
        try:
            result = await client.generate(
                q.prompt,
                task=q.task,
                model=q.model,
                provider=Provider.VLLM,
                system=q.system,
                max_tokens=q.max_tokens,
                temperature=q.temperature,
                seed=q.seed,
                routing_key=f"golden:{q.name}",
            ).collect()
        except RouterError as err:
            ms = (time.perf_counter() - t0) * 1000
            if err.code is None and err.status_code is not grpc.StatusCode.DEADLINE_EXCEEDED:
                raise _Unreachable(
                    f"router at {self.router_address} did not answer "
                    f"({err.status_code.name}: {err.message})"
                ) from err
            code = err.code.name if err.code is not None else err.status_code.name
            return QueryResult(q.name, False, error=f"{code}: {err.message}", latency_ms=ms)
        ms = (time.perf_counter() - t0) * 1000
        if result.provider is not Provider.VLLM:
            return QueryResult(
                q.name,
                False,
                failures=(f"answered by {result.provider.value}, not vLLM",),
                latency_ms=ms,
            )
        semantic = await self._semantic(client, q, result.text)
        failures = check_answer(q, result.text, semantic)
        return QueryResult(q.name, not failures, failures, latency_ms=ms)

    async def _semantic(self, client: RouterClient, q: GoldenQuery, text: str) -> float | None:
        """The answer's semantic similarity to the query's reference: both through the router's
        Embed in one call (one model on one engine); None when not asked for or not measured."""
        content = q.checks.content
        if content is None or content.min_semantic is None or q.checks.reference is None:
            return None
        answer = answer_only(text)
        if not answer:
            return 0.0
        try:
            out = await client.embed([answer, q.checks.reference], routing_key=f"golden:{q.name}")
            a, b = out.embeddings
        except (RouterError, ValueError) as err:
            log.info("golden query %s: the semantic score could not be measured: %s", q.name, err)
            return None
        dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
        norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
        return dot / norm if norm else 0.0
