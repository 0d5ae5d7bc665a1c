"""The measurements of ``bench/router_overhead.py``: one closed-loop window on one path with
the CPU each process spent, the Embed round trips, and the 1,000-stream soak."""

from __future__ import annotations

import asyncio
import base64
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import orjson

from bench._procs import cpu_seconds, rss_mb, self_cpu_seconds
from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from llmtools.llmbench import Prompt, Target, percentile, run_window


@dataclass
class WindowStats:
    """One path, one window: latencies (ms), throughput and CPU per relayed token."""

    path: str
    streams: int
    requests: int
    errors: dict[str, int]
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    router_side_ttft_p50_ms: float | None
    router_side_ttft_p99_ms: float | None
    gap_p50_ms: float | None
    gap_p99_ms: float | None
    tokens_per_s: float
    relay_cpu_pct: float | None
    relay_cpu_us_per_token: float | None
    loadgen_cpu_pct: float
    engine_cpu_pct: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1e3, 3)


async def measure_window(
    path: str,
    target: Target,
    prompts: Sequence[Prompt],
    streams: int,
    warmup_s: float,
    window_s: float,
    relay_pid: int | None,
    engine_pid: int,
    drain_s: float = 30.0,
) -> WindowStats:
    """A closed-loop window; CPU of the relay (router or LiteLLM), of this load generator and of
    the engine simulator over the same wall time, so a saturated load generator shows."""
    relay0 = cpu_seconds(relay_pid) if relay_pid else 0.0
    self0, eng0, t0 = self_cpu_seconds(), cpu_seconds(engine_pid), time.perf_counter()
    win = await run_window(target, prompts, streams, warmup_s, window_s, drain_s)
    wall = time.perf_counter() - t0
    relay = (cpu_seconds(relay_pid) - relay0) if relay_pid else None
    loadgen, engine = self_cpu_seconds() - self0, cpu_seconds(engine_pid) - eng0
    inside = win.in_window()
    ok = [s for s in inside if s.ok]
    ttft = [t for s in ok if (t := s.ttft_s) is not None]
    gaps = [g for s in ok for g in s.gaps()]
    inside_router = [t for s in ok if (t := s.router_ttft_s) is not None]
    errors: dict[str, int] = {}
    for s in inside:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    all_tokens = sum(s.completion_tokens for s in win.samples if s.ok)
    return WindowStats(
        path=path,
        streams=streams,
        requests=len(inside),
        errors=errors,
        ttft_p50_ms=_ms(percentile(ttft, 50)),
        ttft_p99_ms=_ms(percentile(ttft, 99)),
        router_side_ttft_p50_ms=_ms(percentile(inside_router, 50)),
        router_side_ttft_p99_ms=_ms(percentile(inside_router, 99)),
        gap_p50_ms=_ms(percentile(gaps, 50)),
        gap_p99_ms=_ms(percentile(gaps, 99)),
        tokens_per_s=round(win.tokens_in_window() / win.seconds, 1),
        relay_cpu_pct=None if relay is None else round(100 * relay / wall, 1),
        relay_cpu_us_per_token=(
            None if relay is None or not all_tokens else round(relay / all_tokens * 1e6, 1)
        ),
        loadgen_cpu_pct=round(100 * loadgen / wall, 1),
        engine_cpu_pct=round(100 * engine / wall, 1),
    )


# -- Embed ---------------------------------------------------------------------------------


def embed_texts(n: int) -> list[str]:
    """``n`` memOS-like chunks of about 60 words each, all different."""
    words = [
        "memory",
        "node",
        "graph",
        "retrieved",
        "note",
        "project",
        "budget",
        "launch",
        "sensor",
        "soil",
        "garden",
    ]
    return [
        f"chunk {i}: " + " ".join(words[(i + j) % len(words)] + str(j % 13) for j in range(60))
        for i in range(n)
    ]


async def embed_round(
    router_address: str, engine_url: str, engine_model: str, batch: int, calls: int
) -> dict[str, list[float]]:
    """``calls`` sequential Embed calls of ``batch`` texts per path, paths alternating call by
    call; latency in seconds per call."""
    texts = embed_texts(batch)
    req = router_pb2.EmbedRequest(
        inputs=texts, model="mxbai-embed-large", provider=common_pb2.PROVIDER_VLLM
    )
    # The same encoding the router asks for (base64 float32), decoded to floats as a client
    # would: the comparison is then the router's hop and work, not two wire formats.
    body = orjson.dumps({"model": engine_model, "input": texts, "encoding_format": "base64"})
    out: dict[str, list[float]] = {"direct": [], "router": []}
    async with (
        grpc.aio.insecure_channel(
            router_address, options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel,
        aiohttp.ClientSession() as session,
    ):
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for i in range(calls + 2):  # the first two of each path warm connections up
            t0 = time.perf_counter()
            async with session.post(
                engine_url + "/v1/embeddings",
                data=body,
                headers={"content-type": "application/json"},
            ) as resp:
                data = await resp.read()
                assert resp.status == 200, data[:200]
                vectors = [_floats(d["embedding"]) for d in orjson.loads(data)["data"]]
                assert len(vectors) == batch
            t1 = time.perf_counter()
            res = await stub.Embed(req, timeout=30)
            t2 = time.perf_counter()
            assert len(res.embeddings) == batch
            if i >= 2:
                out["direct"].append(t1 - t0)
                out["router"].append(t2 - t1)
    return out


def _floats(b64: str) -> list[float]:
    arr = array("f")
    arr.frombytes(base64.b64decode(b64))
    return arr.tolist()


# -- Soak ------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    streams: int
    duration_s: float
    rss_idle_mb: float
    rss_samples: list[tuple[float, float, int]] = field(default_factory=list)  # (t, MB, active)
    requests_done: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rss_after_mb: float | None = None
    router_cpu_pct: float | None = None

    def steady(self, settle_s: float) -> list[float]:
        return [mb for t, mb, _ in self.rss_samples if t >= settle_s]

    def to_json(self, settle_s: float) -> dict[str, Any]:
        steady = self.steady(settle_s)
        first = steady[0] if steady else None
        drift = (max(steady) - min(steady)) / first if steady and first else None
        return {
            "streams": self.streams,
            "duration_s": self.duration_s,
            "rss_idle_mb": round(self.rss_idle_mb, 1),
            "rss_max_mb": round(max(steady), 1) if steady else None,
            "rss_first_steady_mb": None if first is None else round(first, 1),
            "rss_last_mb": round(steady[-1], 1) if steady else None,
            "rss_spread_pct": None if drift is None else round(100 * drift, 2),
            "rss_after_streams_end_mb": self.rss_after_mb,
            "max_active_requests": max((a for _, _, a in self.rss_samples), default=0),
            "requests_done": self.requests_done,
            "router_cpu_pct": self.router_cpu_pct,
            "errors": self.errors,
            "samples": [(round(t, 1), round(mb, 1), a) for t, mb, a in self.rss_samples],
        }


async def soak(
    target: Target,
    prompts: Sequence[Prompt],
    router_address: str,
    router_pid: int,
    streams: int,
    duration_s: float,
    ramp_s: float,
    every_s: float,
) -> SoakResult:
    """``streams`` closed-loop streams through one router for ``duration_s``; the router's RSS
    and its own count of active requests every ``every_s``."""
    result = SoakResult(streams, duration_s, rss_mb(router_pid))
    end = time.perf_counter() + duration_s

    async def stream(k: int) -> None:
        await asyncio.sleep(ramp_s * k / streams)  # spread the opening over the ramp
        seq = k
        while time.perf_counter() < end:
            s = await target.run(prompts[seq % len(prompts)], seq)
            seq += streams
            result.requests_done += 1
            if s.error:
                result.errors[s.error] = result.errors.get(s.error, 0) + 1

    async with grpc.aio.insecure_channel(router_address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        tasks = [asyncio.create_task(stream(k)) for k in range(streams)]
        t0, cpu0 = time.perf_counter(), cpu_seconds(router_pid)
        try:
            while time.perf_counter() < end:
                await asyncio.sleep(every_s)
                status = await stub.GetStatus(router_pb2.GetStatusRequest(), timeout=10)
                result.rss_samples.append(
                    (time.perf_counter() - t0, rss_mb(router_pid), status.active_requests)
                )
        finally:
            result.router_cpu_pct = round(
                100 * (cpu_seconds(router_pid) - cpu0) / (time.perf_counter() - t0), 1
            )
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(2)
        result.rss_after_mb = round(rss_mb(router_pid), 1)
    return result
