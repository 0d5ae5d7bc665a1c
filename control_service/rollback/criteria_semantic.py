"""The go/no-go criteria on meaning (issue 16). Pure logic over plain data, like ``gate``.

* ``semantic_similarity``: the 10th percentile of the shadow pairs' semantic similarity (cosine
  of the two answers' embeddings, one model on one engine) over the gate's window. The p10, not
  the median: a migration that answers 15 % of questions with something else has a fine median.
  GO at or above ``semantic_go`` (0.80), NO-GO below ``semantic_no_go`` (0.60), INCONCLUSIVE in
  between or with fewer than ``min_pairs`` scored pairs (turn ``shadow_compare_embeddings`` on).
  The lexical p10 is shown next to it as evidence, never judged: it cannot tell a rewording from
  a wrong answer.
* ``judge_loss_rate``: the share of judged pairs the judge found the primary (Ollama) better in.
  The judge is optional: switched off and with no verdicts, GO ("not configured"). On: GO at or
  below ``judge_loss_go`` (0.35), NO-GO above ``judge_loss_no_go`` (0.50), INCONCLUSIVE between,
  with fewer than ``min_pairs`` verdicts, or when its self-agreement on swapped order is below
  ``judge_min_agreement`` (0.60, over at least 5 swap checks): a judge that flips with the order
  is noise, and noise never promotes.
* ``embedding_parity``: only when Embed would move to vLLM (``embedding_provider`` not pinned to
  Ollama): GO when the last parity measurement passed, NO-GO when it failed, INCONCLUSIVE when
  unmeasured. Pinned to Ollama, GO: memOS's index keeps being queried with Ollama's vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_service.rollback.gate import Criterion, Verdict
from llmcore.stats import percentile

MIN_SWAP_CHECKS = 5


@dataclass(frozen=True, slots=True)
class MeaningThresholds:
    semantic_go: float = 0.80
    semantic_no_go: float = 0.60
    judge_loss_go: float = 0.35
    judge_loss_no_go: float = 0.50
    judge_min_agreement: float = 0.60
    min_pairs: int = 20


@dataclass(frozen=True, slots=True)
class ParityResult:
    """The last embedding parity measurement (``control_service.parity``)."""

    at: float
    texts: int
    cosine_mean: float
    cosine_p10: float
    overlap_at_k: float
    k: int
    passed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MeaningInputs:
    """What the shadow store and the parity tracker saw over the gate's window."""

    semantic: tuple[float, ...] = ()  # semantic similarity of each scored pair
    lexical: tuple[float, ...] = ()  # text similarity of the same pairs
    judge_enabled: bool = False
    wins: int = 0
    ties: int = 0
    losses: int = 0
    unjudged: int = 0
    swap_checks: int = 0
    swap_agreed: int = 0
    embed_moves_to_vllm: bool = False
    parity: ParityResult | None = None


def semantic_similarity(t: MeaningThresholds, m: MeaningInputs) -> Criterion:
    name = "semantic_similarity"
    threshold = f"p10 GO >= {t.semantic_go:.2f}, NO-GO < {t.semantic_no_go:.2f}"
    n = len(m.semantic)
    if n < t.min_pairs:
        return Criterion(
            name,
            Verdict.INCONCLUSIVE,
            f"{n} scored pairs",
            threshold,
            f"fewer than {t.min_pairs} shadow pairs with a semantic score "
            "(shadow_compare_embeddings, in SHADOW or SPLIT with shadow_during_split): hold",
        )
    p10 = percentile(m.semantic, 10) or 0.0
    lexical = (percentile(m.lexical, 10) or 0.0) if m.lexical else 0.0
    value = f"p10 {p10:.2f} over {n} pairs (lexical p10 {lexical:.2f}, not judged)"
    if p10 >= t.semantic_go:
        return Criterion(name, Verdict.GO, value, threshold)
    if p10 < t.semantic_no_go:
        return Criterion(
            name, Verdict.NO_GO, value, threshold, "vLLM's answers differ in meaning from Ollama's"
        )
    return Criterion(name, Verdict.INCONCLUSIVE, value, threshold, "between the lines")


def judge_loss_rate(t: MeaningThresholds, m: MeaningInputs) -> Criterion:
    name = "judge_loss_rate"
    threshold = f"GO <= {t.judge_loss_go:.0%}, NO-GO > {t.judge_loss_no_go:.0%}"
    judged = m.wins + m.ties + m.losses
    if not m.judge_enabled and judged == 0:
        return Criterion(
            name, Verdict.GO, "not configured", threshold, "the LLM judge is optional and off"
        )
    counts = f"W/T/L {m.wins}/{m.ties}/{m.losses}, {m.unjudged} unjudged"
    if judged < t.min_pairs:
        return Criterion(
            name,
            Verdict.INCONCLUSIVE,
            counts,
            threshold,
            f"fewer than {t.min_pairs} judged pairs: hold",
        )
    rate = m.losses / judged
    agreement = m.swap_agreed / m.swap_checks if m.swap_checks else None
    noise = (
        f"self-agreement {agreement:.0%} of {m.swap_checks}"
        if agreement is not None
        else "no swap checks"
    )
    value = f"{rate:.0%} losses ({counts}; {noise})"
    if (
        agreement is not None
        and m.swap_checks >= MIN_SWAP_CHECKS
        and agreement < t.judge_min_agreement
    ):
        return Criterion(
            name,
            Verdict.INCONCLUSIVE,
            value,
            threshold,
            f"the judge agrees with itself on swapped order less than "
            f"{t.judge_min_agreement:.0%}: its verdicts are noise",
        )
    if rate <= t.judge_loss_go:
        return Criterion(name, Verdict.GO, value, threshold)
    if rate > t.judge_loss_no_go:
        return Criterion(
            name, Verdict.NO_GO, value, threshold, "the judge prefers Ollama's answers"
        )
    return Criterion(name, Verdict.INCONCLUSIVE, value, threshold, "between the lines")


def embedding_parity(m: MeaningInputs) -> Criterion:
    name = "embedding_parity"
    threshold = "measured and passed before Embed moves to vLLM"
    if not m.embed_moves_to_vllm:
        return Criterion(
            name,
            Verdict.GO,
            "Embed stays on Ollama",
            threshold,
            "embedding_provider is pinned to Ollama: the index keeps Ollama's vectors",
        )
    p = m.parity
    if p is None:
        return Criterion(
            name,
            Verdict.INCONCLUSIVE,
            "not measured",
            threshold,
            "Embed would move to vLLM: run llmctl embeddings parity",
        )
    value = (
        f"cosine mean {p.cosine_mean:.3f}, p10 {p.cosine_p10:.3f}, "
        f"overlap@{p.k} {p.overlap_at_k:.2f} over {p.texts} texts"
    )
    if p.passed:
        return Criterion(name, Verdict.GO, value, threshold)
    return Criterion(name, Verdict.NO_GO, value, threshold, p.detail or "below the thresholds")


def evaluate(t: MeaningThresholds, m: MeaningInputs) -> tuple[Criterion, ...]:
    return (semantic_similarity(t, m), judge_loss_rate(t, m), embedding_parity(m))
