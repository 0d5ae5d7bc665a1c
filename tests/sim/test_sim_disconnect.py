"""A client that goes away aborts its work at once and frees its slot / batch seat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import ollama
import orjson

from llmsim import Flavor, RunningSimulator

SimFactory = Callable[..., Awaitable[RunningSimulator]]
WaitFor = Callable[..., Awaitable[None]]
MESSAGES = [{"role": "user", "content": "tell me everything"}]


async def test_ollama_disconnect_frees_the_slot(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, itl_ms=5.0, completion_tokens=100_000)
    body = {"model": "qwen3:8b", "messages": MESSAGES}
    async with http.stream("POST", sim.base_url + "/api/chat", json=body) as resp:
        lines = resp.aiter_lines()
        await anext(lines)
        await anext(lines)
        assert sim.stats.running == 1
    await wait_for(lambda: sim.stats.aborted_total == 1 and sim.stats.running == 0)
    entry = sim.context.log.entries()[-1]
    assert entry["status"] == "aborted"
    assert entry["completion_tokens"] >= 2
    # The one slot is free again: a short request is served at once.
    async with ollama.AsyncClient(host=sim.base_url) as client:
        done = await client.chat(model="qwen3:8b", messages=MESSAGES, options={"num_predict": 3})
    assert done.eval_count == 3


async def test_vllm_disconnect_counts_abort(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.VLLM, itl_ms=5.0, completion_tokens=100_000)
    body = {"model": "Qwen/Qwen3-8B", "messages": MESSAGES, "stream": True}
    async with http.stream("POST", sim.base_url + "/v1/chat/completions", json=body) as resp:
        async for line in resp.aiter_lines():
            if '"content":"' in line and '"role"' not in line:
                break
    await wait_for(lambda: sim.stats.aborted_total == 1 and sim.stats.running == 0)
    text = (await http.get(sim.base_url + "/metrics")).text
    lbl = 'engine="0",model_name="Qwen/Qwen3-8B"'
    assert f'vllm:request_success_total{{{lbl},finished_reason="abort"}} 1.0' in text
    assert f"vllm:num_requests_running{{{lbl}}} 0.0" in text


async def test_disconnect_while_queued(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.OLLAMA, itl_ms=5.0, completion_tokens=100_000)
    url = sim.base_url + "/api/chat"
    body = {"model": "qwen3:8b", "messages": MESSAGES}

    async def hold() -> None:
        async with http.stream("POST", url, json=body) as resp:
            async for _ in resp.aiter_raw():
                pass

    running = asyncio.create_task(hold())
    await wait_for(lambda: sim.stats.running == 1)
    queued = asyncio.create_task(hold())
    await wait_for(lambda: sim.stats.waiting == 1)
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    await wait_for(lambda: sim.stats.waiting == 0 and sim.stats.aborted_total == 1)
    assert sim.stats.running == 1
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await wait_for(lambda: sim.stats.running == 0 and sim.stats.aborted_total == 2)


async def test_non_stream_disconnect_aborts(
    make_sim: SimFactory, wait_for: WaitFor, http: httpx.AsyncClient
) -> None:
    sim = await make_sim(flavor=Flavor.VLLM, itl_ms=5.0, completion_tokens=100_000)
    body = orjson.dumps({"model": "Qwen/Qwen3-8B", "messages": MESSAGES})
    task = asyncio.create_task(http.post(sim.base_url + "/v1/chat/completions", content=body))
    await wait_for(lambda: sim.stats.running == 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await wait_for(lambda: sim.stats.running == 0 and sim.stats.aborted_total == 1)
