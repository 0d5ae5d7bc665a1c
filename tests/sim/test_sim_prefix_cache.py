"""vLLM automatic prefix caching: block hashes, hit metrics, lower time to first token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from llmsim import Flavor, RunningSimulator
from llmsim._prefix_cache import PrefixCache

SimFactory = Callable[..., Awaitable[RunningSimulator]]
SYSTEM = " ".join(f"Rule {i}: answer from memory, cite the source, be brief." for i in range(40))


def _messages(question: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _metric(text: str, name: str) -> float:
    prefix = name + '{engine="0",model_name="Qwen/Qwen3-8B"}'
    return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[-1])


async def test_shared_system_prompt_hits_the_cache(make_sim: SimFactory) -> None:
    sim = await make_sim(flavor=Flavor.VLLM, prompt_token_ms=0.05, itl_ms=0.0)
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="x") as client:
        first = await client.chat.completions.create(
            model="Qwen/Qwen3-8B", messages=_messages("What did I read today?")
        )
        second = await client.chat.completions.create(
            model="Qwen/Qwen3-8B", messages=_messages("Which paper mentions graphs?")
        )
    assert first.usage is not None
    assert second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None
    assert cached > 400
    assert cached % 16 == 0
    assert cached < second.usage.prompt_tokens
    log = sim.context.log.entries()
    assert [e["cached_tokens"] for e in log] == [0, cached]
    # Simulated TTFT = 2 ms overhead + 0.05 ms per uncached prompt token.
    assert log[1]["planned_ttft_ms"] < log[0]["planned_ttft_ms"] - 0.05 * 400


async def test_hit_metrics(make_sim: SimFactory) -> None:
    sim = await make_sim(flavor=Flavor.VLLM, itl_ms=0.0)
    body = {"model": "Qwen/Qwen3-8B", "messages": _messages("q"), "max_tokens": 2}
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        before = (await http.get("/metrics")).text
        r1 = (await http.post("/v1/chat/completions", json=body)).json()
        r2 = (await http.post("/v1/chat/completions", json=body)).json()
        after = (await http.get("/metrics")).text
    assert _metric(before, "vllm:prefix_cache_hits_total") == 0
    prompt = r1["usage"]["prompt_tokens"]
    assert _metric(after, "vllm:prefix_cache_queries_total") == 2 * prompt
    hits = r2["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert hits == (prompt - 1) // 16 * 16  # a fully cached prompt still computes its last block
    assert _metric(after, "vllm:prefix_cache_hits_total") == hits
    assert _metric(after, "vllm:prompt_tokens_total") == 2 * prompt


def test_chained_block_hashes() -> None:
    cache = PrefixCache(block_size=4, capacity_blocks=100)
    a = [f"t{i}" for i in range(12)]
    assert cache.lookup_and_insert("m", a) == 0
    assert cache.lookup_and_insert("m", [*a, "x", "y"]) == 12
    # Same later blocks after a different first block: no hit (hashes are chained).
    b = ["other", *a[1:]]
    assert cache.lookup_and_insert("m", b) == 0
    # Another model never shares blocks.
    assert cache.lookup_and_insert("n", a) == 0


def test_lru_eviction() -> None:
    cache = PrefixCache(block_size=2, capacity_blocks=2)
    cache.lookup_and_insert("m", ["a", "b", "c", "d", "e"])
    cache.lookup_and_insert("m", ["x", "y", "z", "w", "v"])
    assert len(cache) == 2
    assert cache.lookup_and_insert("m", ["a", "b", "c", "d", "e"]) == 0
