"""The engines' own signals: vLLM /metrics and Ollama /api/ps, parsed and scraped from real
simulators; the pool's prefix-cache hit rate from the replicas' counters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from llmcore.engine_signals import EngineSignals, parse_ollama_ps, parse_vllm_metrics
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import start_router
from router_service.pools import EnginePool
from router_service.pools.scrape import scrape_replica
from tests.router.conftest import make_settings
from tests.router.helpers import collect

SYSTEM = "You are memOS's planner. Follow the house rules. " * 40  # ~400 tokens, shared


def test_vllm_metrics_are_summed_over_models() -> None:
    text = (
        "# HELP vllm:num_requests_running x\n# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="a"} 3.0\n'
        'vllm:num_requests_running{engine="0",model_name="b"} 1.0\n'
        'vllm:num_requests_waiting{engine="0",model_name="a"} 2.0\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.25\n'
        'vllm:prefix_cache_queries_total{engine="0",model_name="a"} 1000.0\n'
        'vllm:prefix_cache_hits_total{engine="0",model_name="a"} 640.0 1712345678000\n'
        "vllm:num_requests_running_bogus 99\n"
        'vllm:num_requests_waiting{model_name="a"} not-a-number\n'
    )
    assert parse_vllm_metrics(text) == EngineSignals(
        running=4, waiting=2, kv_usage=0.25, prefix_queries=1000.0, prefix_hits=640.0
    )


def test_older_vllm_names_still_count() -> None:
    text = (
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.5\n'
        'vllm:gpu_prefix_cache_queries_total{model_name="a"} 10\n'
        'vllm:gpu_prefix_cache_hits_total{model_name="a"} 4\n'
    )
    s = parse_vllm_metrics(text)
    assert (s.kv_usage, s.prefix_queries, s.prefix_hits) == (0.5, 10.0, 4.0)


def test_ollama_ps_lists_loaded_models() -> None:
    body = {"models": [{"name": "qwen3:8b", "model": "qwen3:8b"}, {"model": "bge-m3"}, 7]}
    assert parse_ollama_ps(body).loaded_models == ("qwen3:8b", "bge-m3")
    assert parse_ollama_ps({"models": None}) == EngineSignals()
    assert parse_ollama_ps([]) == EngineSignals()


@pytest.fixture
async def sims() -> AsyncIterator[list[RunningSimulator]]:
    out = [await start_simulator(SimConfig(flavor=Flavor.VLLM)) for _ in range(2)]
    out.append(await start_simulator(SimConfig(flavor=Flavor.OLLAMA)))
    yield out
    for s in out:
        await s.stop()


async def test_the_pool_hit_rate_comes_from_each_replicas_own_cache(
    sims: list[RunningSimulator],
) -> None:
    v1, v2, oll = sims
    app = await start_router(
        make_settings(
            vllm_base_urls=f"{v1.base_url},{v2.base_url}",
            ollama_base_url=oll.base_url,
            primary_provider="vllm",
            replica_scrape_interval_s=60.0,
            engine_probe_interval_s=60.0,
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        pool = app.providers["vllm"]
        assert isinstance(pool, EnginePool)
        assert app.pool_runtime is not None
        await app.pool_runtime.scraper.scrape_all()  # the baseline window
        assert pool.hit_rate() is None  # nothing queried yet
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for episode in range(4):
            for step in range(6):
                req = router_pb2.GenerateRequest(
                    messages=[
                        router_pb2.Message(role=router_pb2.ROLE_SYSTEM, content=SYSTEM),
                        router_pb2.Message(
                            role=router_pb2.ROLE_USER, content=f"episode {episode} step {step}"
                        ),
                    ],
                    routing_key=f"query-{episode}",
                )
                out = await collect(stub.Generate(req, timeout=10))
                assert out.text
        await app.pool_runtime.scraper.scrape_all()
        rate = pool.hit_rate()
        assert rate is not None
        assert rate > 0.5
        queried = sum(r.prefix_window[0] for r in pool.replicas.values())
        assert queried > 0
        assert all(r.signals.running == 0 for r in pool.replicas.values())
        # Ollama replicas report their loaded models.
        ollama = app.providers["ollama"]
        assert isinstance(ollama, EnginePool)
        (r,) = ollama.replicas.values()
        assert await scrape_replica("ollama", r)
        assert isinstance(r.signals.loaded_models, tuple)
    finally:
        await channel.close()
        await app.stop(0)
