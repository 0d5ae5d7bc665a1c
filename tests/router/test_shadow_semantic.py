"""Semantic similarity of shadow pairs: answers compared on meaning (answer text only, JSON field
by field), through the router's own Embed path, under the scorer's own bounds."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from llmsim import Flavor, SimConfig, start_simulator
from llmsim._meaning import concept_embed
from router_service.app import start_router
from router_service.config import from_snapshot
from router_service.shadow import cosine, text_similarity
from router_service.shadow._semantic import Bounded, answer_text, json_figures
from tests.router.conftest import Harness, make_settings
from tests.router.fake_engine import Script
from tests.router.helpers import collect
from tests.router.shadow_support import mirror_of, pairs, shadow_snapshot, wait_mirror

# Controlled answers: one meaning in two wordings, and a fluent answer about something else.
ANSWER = "The quick server gives the answer, and the gateway is safe."
REWORDED = "A rapid backend gives a reply; the proxy is secure."
WRONG = "The garden gives the melody, and the ocean is huge."


def _semantic(a: str, b: str) -> float:
    return cosine(concept_embed(a, 1024), concept_embed(b, 1024))


def test_rewordings_score_high_semantically_and_low_lexically() -> None:
    assert _semantic(ANSWER, REWORDED) == pytest.approx(1.0)
    assert text_similarity(ANSWER, REWORDED) < 0.2
    assert _semantic(ANSWER, WRONG) < 0.25
    # The wrong answer shares more words with the answer than the correct rewording does.
    assert text_similarity(ANSWER, WRONG) > text_similarity(ANSWER, REWORDED)


def test_reasoning_is_not_part_of_the_answer() -> None:
    assert answer_text("<think>long chain of thought</think>\n Paris.") == "Paris."
    assert answer_text("<THINK>never closed") == ""
    assert answer_text("plain") == "plain"


def test_json_answers_are_compared_field_by_field_after_canonical_json() -> None:
    same = json_figures('{"b": 1, "a": {"x": [1, 2]}}', '```json\n{"a":{"x":[1,2]},"b":1}\n```')
    assert same is not None
    assert (same.field_agreement, same.equal) == (1.0, True)
    assert same.canonical[0] == same.canonical[1] == '{"a":{"x":[1,2]},"b":1}'
    # Leaves: intent, confidence, tags[0]; one equal of three (tags[1] only on one side: four).
    diff = json_figures(
        '{"intent": "account", "confidence": 0.9, "tags": ["a"]}',
        '{"intent": "billing", "confidence": 0.9, "tags": ["a", "b"]}',
    )
    assert diff is not None
    assert diff.equal is False
    assert diff.field_agreement == pytest.approx(2 / 4)
    assert json_figures('{"a": 1}', "not json") is None
    assert json_figures("42", "42") is None  # only objects and arrays are structured answers


async def test_bounds_admit_run_and_drop() -> None:
    bound = Bounded()
    gate = asyncio.Event()
    started: list[int] = []

    async def work(i: int) -> int:
        started.append(i)
        await gate.wait()
        return i

    assert bound.admit(1, 1)
    first = asyncio.create_task(bound.run(1, lambda: work(1)))
    await asyncio.sleep(0)
    assert bound.admit(1, 1)
    second = asyncio.create_task(bound.run(1, lambda: work(2)))
    await asyncio.sleep(0)
    assert started == [1]  # the second waits for the slot
    assert not bound.admit(1, 1)  # running 1 + waiting 1: full
    assert (bound.counters.admitted, bound.counters.dropped) == (2, 1)
    gate.set()
    assert list(await asyncio.gather(first, second)) == [1, 2]
    assert bound.in_flight == 0


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    bound = Bounded()
    gate = asyncio.Event()
    bound.admit(1, 1)
    first = asyncio.create_task(bound.run(1, gate.wait))
    await asyncio.sleep(0)
    bound.admit(1, 1)
    waiter = asyncio.create_task(bound.run(1, gate.wait))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bound.in_flight == 1
    gate.set()
    await first
    assert bound.in_flight == 0


# --- in the router ----------------------------------------------------------------------------


async def test_a_failed_scoring_call_records_the_pair_unscored_and_counts_it(
    harness: Harness,
) -> None:
    harness.app.config.swap(from_snapshot(shadow_snapshot(1.0, embeddings=True)))
    harness.ollama.push(Script(), Script(status=500))  # the answer, then the embedding call fails
    await collect(harness.stub.Generate(router_pb2.GenerateRequest(request_id="r1", prompt="hi")))
    mirror = mirror_of(harness)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (pair,) = pairs(harness.app.recorder.drain())
    assert pair.embedding_cosine is None
    assert pair.semantic_dropped
    assert mirror.counters.skipped["semantic_failed"] == 1
    assert mirror.evaluator.semantic.counters.failed == 1


async def test_scoring_uses_the_configured_model_and_engine_for_both_sides(
    harness: Harness,
) -> None:
    snap = shadow_snapshot(1.0, embeddings=True)
    snap.flags.shadow_semantic.provider = common_pb2.PROVIDER_VLLM
    harness.app.config.swap(from_snapshot(snap))
    harness.ollama.push(Script(tokens=["<think>", "hmm", "</think>", "Hello"]))
    harness.vllm.push(Script(tokens=["Hello"]))
    await collect(harness.stub.Generate(router_pb2.GenerateRequest(request_id="r2", prompt="hi")))
    mirror = mirror_of(harness)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (pair,) = pairs(harness.app.recorder.drain())
    assert pair.embedding_cosine == pytest.approx(1.0)
    (embed,) = [s for s in harness.vllm.seen if s.path == "/v1/embeddings"]
    assert embed.body["model"] == "mixedbread-ai/mxbai-embed-large-v1"
    assert embed.body["input"] == ["Hello", "Hello"]  # the reasoning was cut


async def test_sampling_is_per_episode(harness: Harness) -> None:
    """All calls of a sampled memOS query are mirrored, none of an unsampled one."""
    harness.app.config.swap(from_snapshot(shadow_snapshot(0.5)))
    keys = [f"query-{i}" for i in range(12)]
    for key in keys:
        for call in range(3):
            req = router_pb2.GenerateRequest(
                request_id=f"{key}-{call}", routing_key=key, prompt="hi"
            )
            await collect(harness.stub.Generate(req))
    mirror = mirror_of(harness)
    await wait_mirror(mirror, lambda: mirror.counters.completed == mirror.counters.mirrored)
    await wait_mirror(mirror, lambda: mirror.counters.compared == mirror.counters.mirrored)
    by_key: dict[str, int] = {}
    for p in pairs(harness.app.recorder.drain()):
        by_key[p.routing_key] = by_key.get(p.routing_key, 0) + 1
    assert set(by_key.values()) == {3}  # whole episodes
    assert 0 < len(by_key) < len(keys)


# --- on the simulators: meaning, not words ----------------------------------------------------


async def test_on_the_simulators_a_paraphrasing_engine_scores_high_an_unrelated_one_low() -> None:
    ollama = await start_simulator(
        SimConfig(flavor=Flavor.OLLAMA, answer_mode="concepts", embedding_mode="concepts")
    )
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, answer_mode="concepts"))
    app = await start_router(
        make_settings(ollama_base_url=ollama.base_url, vllm_base_url=vllm.base_url)
    )
    try:
        app.config.swap(from_snapshot(shadow_snapshot(1.0, embeddings=True)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            mirror = app.shadow
            assert mirror is not None

            async def run(prefix: str) -> list[tuple[float, float]]:
                for i in range(8):
                    prompt = f"Explain why the router sends query {prefix}{i} to a fast engine"
                    req = router_pb2.GenerateRequest(request_id=f"{prefix}{i}", prompt=prompt)
                    await collect(stub.Generate(req))
                await wait_mirror(mirror, lambda: mirror.counters.compared == 8)
                mirror.counters.compared = 0
                got = pairs(app.recorder.drain())
                return [(p.text_similarity, p.embedding_cosine or 0.0) for p in got]

            same = await run("p")
            vllm.context.faults.unrelated_answers = True
            other = await run("u")
    finally:
        await app.stop(0)
        await ollama.stop()
        await vllm.stop()
    assert min(s for _, s in same) == pytest.approx(1.0)
    assert max(s for _, s in other) < 0.6
    # Lexically the two engines look alike either way: the words do not tell them apart.
    assert max(lex for lex, _ in same) < 0.6
    assert max(lex for lex, _ in other) > 0.15
