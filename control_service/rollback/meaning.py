"""Gathers the meaning criteria's inputs (``criteria_semantic``) for the go/no-go gate: the
shadow pairs of the gate's window (semantic and lexical scores, judge verdicts, only pairs where
vLLM was the shadow and both sides answered), the flags (is the judge on, would Embed move to
vLLM) and the last embedding parity measurement."""

from __future__ import annotations

from collections.abc import Callable

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service.rollback.criteria_semantic import MeaningInputs, ParityResult
from control_service.shadow_store import ShadowStore
from control_service.state import DesiredState


class MeaningSource:
    def __init__(
        self,
        shadow: ShadowStore,
        state: Callable[[], DesiredState],
        parity: Callable[[], ParityResult | None] = lambda: None,
    ) -> None:
        self._shadow = shadow
        self._state = state
        self._parity = parity

    def inputs(self, window_s: float) -> MeaningInputs:
        pairs = [
            m
            for m in self._shadow.pairs(window_s)
            if m.shadow_provider == common_pb2.PROVIDER_VLLM and m.primary_ok and m.shadow_ok
        ]
        scored = [m for m in pairs if m.HasField("embedding_cosine")]
        verdicts = [m.judge_verdict for m in pairs]
        swaps = [m.judge_swap_agreed for m in pairs if m.HasField("judge_swap_agreed")]
        flags = self._state().flags
        return MeaningInputs(
            semantic=tuple(m.embedding_cosine for m in scored),
            lexical=tuple(m.text_similarity for m in scored),
            judge_enabled=flags.shadow_judge.enabled,
            wins=verdicts.count(control_pb2.JUDGE_VERDICT_SHADOW_BETTER),
            ties=verdicts.count(control_pb2.JUDGE_VERDICT_TIE),
            losses=verdicts.count(control_pb2.JUDGE_VERDICT_PRIMARY_BETTER),
            unjudged=verdicts.count(control_pb2.JUDGE_VERDICT_UNJUDGED),
            swap_checks=len(swaps),
            swap_agreed=sum(swaps),
            embed_moves_to_vllm=flags.embedding_provider != "ollama",
            parity=self._parity(),
        )
