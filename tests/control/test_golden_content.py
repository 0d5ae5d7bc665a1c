"""Golden queries that check content: required JSON fields, keywords, and the semantic
similarity to a reference answer (measured through the router's Embed), on plain data and on
the meaning-aware simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.llm import Provider, RouterClient
from control_service.rollback import gate
from control_service.rollback.gate import Verdict
from control_service.rollback.golden import GoldenFileError, check_answer, loads
from control_service.rollback.golden_runner import GoldenRunner
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from router_service.settings import RouterSettings


def _one(checks: str) -> object:
    return loads(f"queries:\n  - name: q\n    prompt: p\n    checks: {checks}\n")[0]


def test_required_fields_keywords_and_semantic() -> None:
    q = _one("{required_fields: [intent, 'entities.0.name'], keywords: [account, reset]}")
    ok = '```json\n{"intent": "account", "entities": [{"name": "reset"}]}\n```'
    assert check_answer(q, ok) == ()  # type: ignore[arg-type]
    assert check_answer(q, '{"intent": "x", "entities": []}') == (  # type: ignore[arg-type]
        "required_fields: missing entities.0.name",
        "keywords: 0/2 found, need 2 (missing account, reset)",
    )
    assert check_answer(q, "account reset")[0] == "required_fields: the answer is not JSON"  # type: ignore[arg-type]
    some = _one("{keywords: [paris, france, capital], min_keywords: 2}")
    assert check_answer(some, "Paris is the CAPITAL.") == ()  # type: ignore[arg-type]
    # Reasoning does not count: the keyword only in the thinking fails.
    assert check_answer(some, "<think>paris france</think> Lyon") != ()  # type: ignore[arg-type]
    sem = _one("{reference: 'Paris', min_semantic: 0.8}")
    assert check_answer(sem, "x", 0.9) == ()  # type: ignore[arg-type]
    assert check_answer(sem, "x", 0.5) == (  # type: ignore[arg-type]
        "semantic similarity 0.50 to the reference < min_semantic 0.8",
    )
    assert check_answer(sem, "x", None) == (  # type: ignore[arg-type]
        "min_semantic: the semantic similarity could not be measured",
    )


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ("{min_semantic: 0.8}", "queries[0].checks.min_semantic: needs a reference"),
        ("{reference: a, min_semantic: 3}", "queries[0].checks.min_semantic: a number in [-1, 1]"),
        ("{keywords: [a], min_keywords: 2}", "queries[0].checks.min_keywords: an integer"),
        ("{required_fields: [1]}", "queries[0].checks.required_fields: must be a non-empty"),
    ],
)
def test_bad_content_checks_name_the_entry(checks: str, message: str) -> None:
    with pytest.raises(GoldenFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _one(checks)


@pytest.fixture
async def stack() -> AsyncIterator[tuple[RunningSimulator, RouterApp]]:
    ollama = await start_simulator(
        SimConfig(flavor=Flavor.OLLAMA, answer_mode="concepts", embedding_mode="concepts")
    )
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM, answer_mode="concepts"))
    router = await start_router(
        RouterSettings(
            host="127.0.0.1", port=0, ollama_base_url=ollama.base_url, vllm_base_url=vllm.base_url
        )
    )
    yield vllm, router
    await router.stop(0)
    await ollama.stop()
    await vllm.stop()


async def test_the_reference_is_judged_on_meaning_not_words(
    stack: tuple[RunningSimulator, RouterApp], tmp_path: Path
) -> None:
    vllm, router = stack
    address = f"127.0.0.1:{router.port}"
    prompt = "Explain why the router needs a fallback engine"
    async with RouterClient(address) as client:  # the answer an operator accepted from Ollama
        reference = (
            await client.generate(prompt, provider=Provider.OLLAMA, max_tokens=24).collect()
        ).text
    golden = tmp_path / "golden.yaml"
    golden.write_text(
        "defaults: {max_tokens: 24}\nqueries:\n"
        f"  - name: meaning\n    prompt: {prompt!r}\n"
        f"    checks: {{reference: {reference!r}, min_semantic: 0.9}}\n"
        f"  - name: words\n    prompt: {prompt!r}\n"
        f"    checks: {{reference: {reference!r}, min_similarity: 0.9}}\n"
    )
    run = await GoldenRunner(golden, address, timeout_s=10).run()
    by_name = {r.name: r for r in run.results}
    # vLLM says the same thing in other words: the semantic check passes, the lexical one not.
    assert by_name["meaning"].passed, by_name["meaning"]
    assert not by_name["words"].passed
    vllm.faults.unrelated_answers = True  # fluent, and about something else
    run = await GoldenRunner(golden, address, timeout_s=10).run()
    failures = {r.name: r.failures for r in run.results}
    assert failures["meaning"][0].startswith("semantic similarity 0.")
    assert gate.golden_queries(run, run.at).verdict is Verdict.NO_GO
