"""Ollama slots and queue, vLLM continuous batching, and the timing model behind them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from llmsim import Flavor, ModelSpec, RunningSimulator, Timing
from llmsim._engine import ModelEngine
from llmsim._scheduler import Admission, QueueFull

SimFactory = Callable[..., Awaitable[RunningSimulator]]
WaitFor = Callable[..., Awaitable[None]]
LONG = {"itl_ms": 20.0, "completion_tokens": 100_000}
CHAT = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}]}


async def _hold(http: httpx.AsyncClient, url: str, body: dict[str, Any], rid: str = "") -> None:
    """Stream until cancelled (cancelling closes the connection, which aborts the request)."""
    headers = {"X-Request-Id": rid} if rid else {}
    async with http.stream("POST", url, json=body, headers=headers) as resp:
        async for _ in resp.aiter_raw():
            pass


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_fifth_request_waits_for_a_slot(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, num_parallel=4, **LONG)
    url = sim.base_url + "/api/chat"
    tasks = [asyncio.create_task(_hold(http, url, CHAT)) for _ in range(5)]
    await wait_for(lambda: sim.stats.running == 4 and sim.stats.waiting == 1, what="4 + 1")
    stats = orjson.loads((await http.get(sim.base_url + "/sim/stats")).content)
    assert stats["models"]["qwen3:8b"] == {"running": 4, "waiting": 1}
    await _cancel(tasks)
    await wait_for(lambda: sim.stats.running == 0 and sim.stats.waiting == 0, what="drain")
    assert sim.stats.aborted_total == 5


async def test_queue_limit_gives_503(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, num_parallel=4, max_queue=1, **LONG)
    url = sim.base_url + "/api/chat"
    tasks = [asyncio.create_task(_hold(http, url, CHAT)) for _ in range(5)]
    await wait_for(lambda: sim.stats.running == 4 and sim.stats.waiting == 1, what="full")
    resp = await http.post(url, json=CHAT)
    assert resp.status_code == 503
    assert orjson.loads(resp.content) == {
        "error": "server busy, please try again.  maximum pending requests exceeded"
    }
    assert sim.stats.rejected_total == 1
    await _cancel(tasks)


async def test_queue_is_fifo(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, **LONG)  # one slot
    url = sim.base_url + "/api/chat"
    first = asyncio.create_task(_hold(http, url, CHAT, "a"))
    await wait_for(lambda: sim.stats.running == 1)
    second = asyncio.create_task(_hold(http, url, CHAT, "b"))
    await wait_for(lambda: sim.stats.waiting == 1)
    third = asyncio.create_task(_hold(http, url, CHAT, "c"))
    await wait_for(lambda: sim.stats.waiting == 2)

    def admitted() -> set[str]:
        log = sim.context.log.entries()
        return {e["x_request_id"] for e in log if "prompt_tokens" in e}

    assert admitted() == {"a"}
    await _cancel([first])
    await wait_for(lambda: "b" in admitted(), what="b admitted")
    assert "c" not in admitted()
    assert sim.stats.waiting == 1
    await _cancel([second, third])


async def test_continuous_batching_respects_max_num_seqs(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.VLLM, max_num_seqs=2, **LONG)
    url = sim.base_url + "/v1/chat/completions"
    body = {"model": "Qwen/Qwen3-8B", "messages": CHAT["messages"], "stream": True}
    tasks = [asyncio.create_task(_hold(http, url, body)) for _ in range(3)]
    await wait_for(lambda: sim.stats.running == 2 and sim.stats.waiting == 1, what="2 + 1")
    text = (await http.get(sim.base_url + "/metrics")).text
    lbl = '{engine="0",model_name="Qwen/Qwen3-8B"}'
    assert f"vllm:num_requests_running{lbl} 2.0" in text
    assert f"vllm:num_requests_waiting{lbl} 1.0" in text
    usage = next(
        line for line in text.splitlines() if line.startswith("vllm:kv_cache_usage_perc" + lbl)
    )
    assert float(usage.split()[-1]) > 0
    await _cancel(tasks)
    await wait_for(lambda: sim.stats.running == 0 and sim.stats.waiting == 0)


def _engine(load_factor: float, prompt_token_ms: float = 0.0) -> ModelEngine:
    timing = Timing(
        ttft_ms=5.0,
        prompt_token_ms=prompt_token_ms,
        itl_ms=10.0,
        load_factor=load_factor,
        completion_tokens=1,
    )
    return ModelEngine(ModelSpec(name="m"), timing, Admission(8), rng=random.Random(0))


def test_step_time_grows_with_batch_size() -> None:
    eng = _engine(load_factor=0.5)
    steps = []
    for n in (1, 2, 3, 5):
        eng.admission.running = n
        steps.append(eng.step_s())
    assert steps == pytest.approx([0.010, 0.015, 0.020, 0.030])


def test_prefills_run_one_after_another_and_stall_decoders() -> None:
    eng = _engine(load_factor=0.0, prompt_token_ms=1.0)
    first = eng.begin_prefill(100.0, 50)  # 50 ms compute + 5 ms overhead
    second = eng.begin_prefill(100.0, 20)  # waits for the first prefill
    assert first == pytest.approx(100.055)
    assert second == pytest.approx(100.075)
    assert eng.stall_s == pytest.approx(0.070)


async def test_admission_fifo_and_cancelled_waiter(wait_for: WaitFor) -> None:
    adm = Admission(1, queue_room=lambda: True)
    await adm.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        await adm.acquire()
        order.append(name)

    b = asyncio.create_task(take("b"))
    c = asyncio.create_task(take("c"))
    d = asyncio.create_task(take("d"))
    await wait_for(lambda: adm.waiting == 3)
    c.cancel()
    await asyncio.gather(c, return_exceptions=True)
    assert adm.waiting == 2
    adm.release()
    await b
    adm.release()
    await d
    assert order == ["b", "d"]
    assert adm.running == 1
    adm.release()
    assert adm.running == 0
    full = Admission(1, queue_room=lambda: False)
    await full.acquire()
    with pytest.raises(QueueFull):
        await full.acquire()
