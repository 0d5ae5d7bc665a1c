"""The LLM judge of shadow pairs: blind, order randomised per pair (a pinned rng here), verdicts
parsed strictly or counted unjudged, a swap check as its noise figure, a budget that holds."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import grpc
import pytest

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2, router_pb2_grpc
from router_service.app import start_router
from router_service.config import from_snapshot
from router_service.providers import OllamaProvider, OpenAICompatProvider
from router_service.shadow import ShadowMirror
from router_service.shadow._judge import VERDICT_SCHEMA, Budget, outcome, parse_verdict, plan
from tests.router.conftest import Harness, make_settings
from tests.router.fake_engine import FakeEngine, Script
from tests.router.helpers import collect
from tests.router.shadow_support import mirror_of, pairs, shadow_snapshot, wait_mirror

JUDGE = "llama3.3:70b"  # no task uses it: not an arm


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ('{"verdict": "A"}', "A"),
        ('{"verdict": "tie", "reason": "both fine"}', "tie"),
        ('```json\n{"verdict": "B"}\n```', "B"),
        ("A", None),  # prose
        ('The verdict is {"verdict": "A"}', None),
        ('{"verdict": "a"}', None),
        ('{"verdict": "A", "score": 3}', None),  # not the schema
        ('{"verdict": "A", "reason": 7}', None),
        ('["A"]', None),
    ],
)
def test_verdicts_parse_strictly(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


def test_verdicts_map_back_to_the_shadow_side() -> None:
    assert outcome("A", shadow_is_a=True) == "shadow_better"
    assert outcome("A", shadow_is_a=False) == "primary_better"
    assert outcome("B", shadow_is_a=False) == "shadow_better"
    assert outcome("tie", shadow_is_a=True) == "tie"
    assert outcome(None, shadow_is_a=True) == "unjudged"


def test_the_order_is_randomised_per_pair_and_reproducible_with_a_seed() -> None:
    rng = random.Random(7)
    orders = [plan(rng, 0.0).shadow_is_a for _ in range(200)]
    assert 70 < sum(orders) < 130  # both orders, about as often
    rng = random.Random(7)
    assert [plan(rng, 0.0).shadow_is_a for _ in range(200)] == orders


def test_the_budget_is_a_sliding_hour() -> None:
    now = [0.0]
    budget = Budget(lambda: now[0])
    assert [budget.take(3) for _ in range(4)] == [True, True, True, False]
    assert not budget.take(3)
    now[0] = 3599.0
    assert not budget.take(3)
    now[0] = 3600.5
    assert budget.take(3, 2)  # the first three aged out
    assert not budget.take(3, 2)


# --- in a router, with the judge on the Ollama fake ------------------------------------------


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    ollama, vllm = FakeEngine("ollama"), FakeEngine("vllm")
    app = await start_router(
        make_settings(),
        {"ollama": OllamaProvider(ollama.client()), "vllm": OpenAICompatProvider(vllm.client())},
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    # The judge's order comes from a pinned generator (tests may inject it).
    assert app.shadow is not None
    app.shadow.evaluator.judge.rng = random.Random(3)
    harness = Harness(app, ollama, vllm, channel, router_pb2_grpc.RouterServiceStub(channel))
    yield harness
    await channel.close()
    await app.stop(0)


def judged(
    *, calls_per_hour: int = 0, swap: float = 0.0, prompt: str = "", timeout_ms: int = 0
) -> control_pb2.ConfigSnapshot:
    snap = shadow_snapshot(1.0)
    snap.flags.shadow_judge.CopyFrom(
        control_pb2.ShadowJudge(
            enabled=True,
            model=JUDGE,
            provider=common_pb2.PROVIDER_OLLAMA,
            max_calls_per_hour=calls_per_hour,
            swap_check_rate=swap,
            prompt=prompt,
            timeout_ms=timeout_ms,
        )
    )
    return snap


async def _pair(h: Harness, rid: str, judge: list[str]) -> None:
    """One request: the primary (Ollama) answers "good answer", the shadow (vLLM) "bad one",
    then the judge (Ollama) answers each of ``judge`` in turn."""
    h.ollama.push(Script(tokens=["good answer"]), *(Script(tokens=[j]) for j in judge))
    h.vllm.push(Script(tokens=["bad one"]))
    await collect(h.stub.Generate(router_pb2.GenerateRequest(request_id=rid, prompt=f"Q {rid}")))
    mirror = mirror_of(h)
    await wait_mirror(mirror, lambda: mirror.in_flight == 0 and mirror.counters.compared >= 1)


def _judge_prompts(h: Harness) -> list[str]:
    return [s.body["messages"][0]["content"] for s in h.ollama.seen if s.body.get("model") == JUDGE]


async def test_blind_randomised_order_and_the_verdict_mapped_back(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged()))
    mirror: ShadowMirror = mirror_of(h)
    rng = mirror.evaluator.judge.rng
    outcomes = []
    for i in range(8):
        probe = random.Random()
        probe.setstate(rng.getstate())
        shadow_is_a = probe.random() < 0.5  # the order plan() will draw for this pair
        # A judge that picks the good (primary) answer, wherever it stands.
        await _pair(h, f"r{i}", ['{"verdict": "B"}' if shadow_is_a else '{"verdict": "A"}'])
        (p,) = pairs(h.app.recorder.drain())
        mirror.counters.compared = 0
        outcomes.append((shadow_is_a, p.judge_verdict))
    prompts = _judge_prompts(h)
    assert len(prompts) == 8
    for prompt in prompts:  # blind: no engine or model named
        for name in ("ollama", "vllm", "Qwen", "qwen3"):
            assert name not in prompt
    # Both orders occurred, and the good answer won every time.
    assert {o for o, _ in outcomes} == {True, False}
    assert {v for _, v in outcomes} == {"primary_better"}
    for (shadow_is_a, _), prompt in zip(outcomes, prompts, strict=True):
        a, b = prompt.index("Answer A:"), prompt.index("Answer B:")
        assert ("bad one" in prompt[a:b]) is shadow_is_a


async def test_the_verdict_is_asked_as_structured_output(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged()))
    await _pair(h, "f1", ['{"verdict": "tie"}'])
    (judge_call,) = [x for x in h.ollama.seen if x.body.get("model") == JUDGE]
    assert judge_call.body["format"] == VERDICT_SCHEMA  # the engine constrains the answer
    assert judge_call.body["options"]["temperature"] == 0.0
    assert judge_call.headers["x-request-id"] == "f1-shadow-judge"


async def test_an_unparseable_verdict_counts_as_unjudged(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged()))
    await _pair(h, "u1", ["I think A is better."])
    (p,) = pairs(h.app.recorder.drain())
    assert p.judge_verdict == "unjudged"
    judge = mirror_of(h).evaluator.judge
    assert (judge.counters.unjudged, judge.counters.judged, judge.counters.calls) == (1, 0, 1)


async def test_the_swap_check_measures_a_position_biased_judge(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged(swap=1.0)))
    # Always "A": whichever answer comes first wins; swapped, the other does.
    await _pair(h, "s1", ['{"verdict": "A"}', '{"verdict": "A"}'])
    (p,) = pairs(h.app.recorder.drain())
    assert p.judge_swap_agreed is False
    assert len(_judge_prompts(h)) == 2


async def test_the_budget_cap_holds(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged(calls_per_hour=3)))
    verdicts = []
    for i in range(5):
        judge_answers = ['{"verdict": "tie"}'] if i < 3 else []
        await _pair(h, f"b{i}", judge_answers)
        verdicts += [p.judge_verdict for p in pairs(h.app.recorder.drain())]
        mirror_of(h).counters.compared = 0
    assert verdicts == ["tie", "tie", "tie", None, None]
    judge = mirror_of(h).evaluator.judge
    assert (judge.counters.calls, judge.counters.over_budget) == (3, 2)
    assert len(_judge_prompts(h)) == 3


async def test_a_pair_of_the_judges_own_model_is_not_judged(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged()))
    h.ollama.push(Script(tokens=["x"]))
    h.vllm.push(Script(tokens=["y"]))
    req = router_pb2.GenerateRequest(request_id="arm", prompt="q", model=JUDGE)
    await collect(h.stub.Generate(req))
    mirror = mirror_of(h)
    await wait_mirror(mirror, lambda: mirror.counters.compared == 1)
    (p,) = pairs(h.app.recorder.drain())
    assert p.judge_verdict is None
    assert mirror.evaluator.judge.counters.judge_is_arm == 1


async def test_a_judge_past_its_own_timeout_leaves_the_pair_unjudged(h: Harness) -> None:
    h.app.config.swap(from_snapshot(judged(timeout_ms=50)))
    h.ollama.push(Script(tokens=["good answer"]), Script(tokens=['{"verdict"'], hang_after=1))
    h.vllm.push(Script(tokens=["bad one"]))
    await collect(h.stub.Generate(router_pb2.GenerateRequest(request_id="t1", prompt="Q")))
    mirror = mirror_of(h)
    await wait_mirror(mirror, lambda: mirror.in_flight == 0 and mirror.counters.compared == 1)
    (p,) = pairs(h.app.recorder.drain())
    assert p.judge_verdict == "unjudged"
    assert mirror.evaluator.judge.counters.unjudged == 1
