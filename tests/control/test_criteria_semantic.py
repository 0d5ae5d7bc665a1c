"""The go/no-go criteria on meaning, on plain data: each verdict and its evidence."""

from __future__ import annotations

import pytest

from control_service.parity import measure
from control_service.rollback.criteria_semantic import (
    MeaningInputs,
    MeaningThresholds,
    ParityResult,
    embedding_parity,
    judge_loss_rate,
    semantic_similarity,
)
from control_service.rollback.gate import Verdict

T = MeaningThresholds(min_pairs=10)


@pytest.mark.parametrize(
    ("scores", "verdict"),
    [
        ([0.95] * 20, Verdict.GO),
        ([0.95] * 17 + [0.2] * 3, Verdict.NO_GO),  # 15 % answered with something else
        ([0.7] * 20, Verdict.INCONCLUSIVE),
        ([0.95] * 5, Verdict.INCONCLUSIVE),  # too few scored pairs
    ],
)
def test_semantic_similarity_judges_the_p10(scores: list[float], verdict: Verdict) -> None:
    c = semantic_similarity(T, MeaningInputs(semantic=tuple(scores), lexical=(0.3,) * len(scores)))
    assert c.verdict is verdict
    if len(scores) >= 10:
        assert "lexical p10 0.30, not judged" in c.value


def test_the_judge_is_optional_and_its_noise_holds() -> None:
    assert judge_loss_rate(T, MeaningInputs()).verdict is Verdict.GO
    assert judge_loss_rate(T, MeaningInputs()).value == "not configured"
    on = MeaningInputs(judge_enabled=True, wins=4, ties=4, losses=2)
    assert judge_loss_rate(T, on).verdict is Verdict.GO  # 20 % losses
    losing = MeaningInputs(judge_enabled=True, wins=2, ties=2, losses=8)
    assert judge_loss_rate(T, losing).verdict is Verdict.NO_GO
    noisy = MeaningInputs(
        judge_enabled=True, wins=2, ties=2, losses=8, swap_checks=10, swap_agreed=3
    )
    c = judge_loss_rate(T, noisy)
    assert c.verdict is Verdict.INCONCLUSIVE
    assert "self-agreement 30% of 10" in c.value
    few = MeaningInputs(judge_enabled=True, wins=1, losses=1, unjudged=30)
    assert judge_loss_rate(T, few).verdict is Verdict.INCONCLUSIVE


def test_embedding_parity_only_matters_when_embed_moves() -> None:
    assert embedding_parity(MeaningInputs()).verdict is Verdict.GO
    moving = MeaningInputs(embed_moves_to_vllm=True)
    assert embedding_parity(moving).verdict is Verdict.INCONCLUSIVE
    bad = ParityResult(1.0, 16, 0.4, 0.37, 0.55, 5, False, "cosine p10 0.370 < 0.95")
    good = ParityResult(1.0, 16, 1.0, 1.0, 1.0, 5, True)
    moving_bad = MeaningInputs(embed_moves_to_vllm=True, parity=bad)
    assert embedding_parity(moving_bad).verdict is Verdict.NO_GO
    moving_good = MeaningInputs(embed_moves_to_vllm=True, parity=good)
    assert embedding_parity(moving_good).verdict is Verdict.GO


def test_parity_sees_rotated_spaces_through_the_neighbours() -> None:
    a = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.1]]
    rotated = [[y, -x, z] for x, y, z in a]  # same geometry, other axes
    p = measure(a, rotated, k=1)
    assert p.overlap_at_k == 1.0  # retrieval would find the same neighbours
    assert p.cosine_p10 < 0.5  # but the vectors themselves do not match the index
    assert not p.passed
    same = measure(a, a, k=1)
    assert same.cosine_p10 == pytest.approx(1.0)
    assert (same.overlap_at_k, same.passed) == (1.0, True)
