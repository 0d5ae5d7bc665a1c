"""The drill's meaning step (issue 16): in SHADOW, vLLM's answers are judged on meaning. First
the simulated vLLM paraphrases Ollama (same meaning, other words): the gate's
``semantic_similarity`` is GO. Then the simulator's ``unrelated_answers`` fault makes vLLM answer
fluently about something else: the criterion turns NO-GO, while the lexical similarity, which
cannot tell a rewording from a wrong answer, barely moves. The fault is cleared before the walk
goes on. Needs simulators in ``--answer-mode concepts --embedding-mode concepts``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clients.cli.api import gate_document

if TYPE_CHECKING:
    from llmtools.drill._plan import Drill

CRITERION = "semantic_similarity"


async def _semantic(drill: Drill) -> tuple[str, str]:
    drill.llmctl("gonogo")
    doc = gate_document(await drill.control.evaluate_go_no_go())
    (c,) = [x for x in doc["criteria"] if x["name"] == CRITERION]
    drill.view.say(f"    {CRITERION}: {c['verdict'].upper().replace('_', '-')}, {c['value']}")
    return str(c["verdict"]), str(c["value"])


async def meaning_step(drill: Drill) -> None:
    drill.step("SHADOW on meaning: vLLM says the same in other words")
    verdict, value = await _semantic(drill)
    drill.expect(f"{CRITERION} GO while vLLM paraphrases", verdict == "go", value)

    drill.step("inject: vLLM answers fluently about something else (unrelated_answers)")
    await drill.faults(drill.t.vllm_url, {"unrelated_answers": True})
    # Long enough for the unrelated pairs to be far more than a tenth of the gate's window.
    await drill.dwell("SHADOW (unrelated)", drill.c.short_dwell_s * 2, None)
    verdict, value = await _semantic(drill)
    drill.expect(
        f"{CRITERION} NO-GO on unrelated answers (the lexical p10 alone would not say so)",
        verdict == "no_go",
        value,
    )
    await drill.faults(drill.t.vllm_url, {"unrelated_answers": False})
