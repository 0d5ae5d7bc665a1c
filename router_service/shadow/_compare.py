"""How a primary answer and its shadow are compared. Plain functions, no I/O.

LLM answers are not deterministic, so string equality says little (control-plane.md §4,
Scientist's ``clean`` and Diffy's noise floor). What is compared:

* **text similarity**: the multiset (bag-of-words) Jaccard index of the normalised tokens,
  ``sum(min(a[t], b[t])) / sum(max(a[t], b[t]))``. Normalisation casefolds, turns every character
  that is neither a word character nor whitespace (punctuation, symbols) into a space and splits
  on whitespace, so "Hello, World!" and "hello world" are the same answer. Why this measure: it
  is linear in the answer length (a ``Counter`` per side) where ``difflib`` is quadratic in the
  worst case and, past 200 tokens, changes its result through its "autojunk" heuristic; it is
  symmetric, exactly 1.0 for the same bag of words and exactly 0.0 when no word is shared; and it
  tolerates the reordering and rephrasing two engines produce for the same prompt while still
  dropping with every missing or extra word (repetitions count, unlike a set Jaccard).
* **length ratio**: shadow characters over primary characters of the raw answers.
* **embedding cosine** (optional): cosine of the two answers' embeddings, computed by the caller.
* **decode rate**: tokens per second after the first token, as the router reports it in
  ``GenerateEnd.timings``, so both sides are measured the same way.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_NOT_WORD = re.compile(r"[^\w\s]+")


def normalise(text: str) -> list[str]:
    """Casefolded word tokens without punctuation or symbols."""
    return _NOT_WORD.sub(" ", text.casefold()).split()


def text_similarity(primary: str, shadow: str) -> float:
    """Multiset Jaccard index of the normalised tokens, in [0, 1]; two empty answers are 1.0."""
    a, b = Counter(normalise(primary)), Counter(normalise(shadow))
    if not a and not b:
        return 1.0
    common = sum((a & b).values())
    union = sum((a | b).values())
    return common / union


def length_ratio(primary: str, shadow: str) -> float:
    """``len(shadow) / len(primary)`` in characters; 1.0 when both are empty. An empty primary
    counts as one character, so the ratio stays finite (JSON has no infinity)."""
    if not primary and not shadow:
        return 1.0
    return len(shadow) / max(len(primary), 1)


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """Cosine similarity in [-1, 1]; 0.0 when either vector is zero."""
    if len(u) != len(v):
        raise ValueError(f"vectors differ in dimension: {len(u)} and {len(v)}")
    dot = math.fsum(x * y for x, y in zip(u, v, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in u)) * math.sqrt(math.fsum(y * y for y in v))
    if norm == 0:
        return 0.0
    return max(-1.0, min(1.0, dot / norm))


def decode_rate(completion_tokens: int, ttft_s: float | None, total_s: float) -> float:
    """Tokens per second after the first: ``(tokens - 1) / (total - ttft)``; 0.0 when undefined.
    The same formula as the router's ``GenerateEnd.timings.tokens_per_second``."""
    gen_time = total_s - (ttft_s if ttft_s is not None else total_s)
    if completion_tokens <= 1 or gen_time <= 0:
        return 0.0
    return (completion_tokens - 1) / gen_time


@dataclass(frozen=True, slots=True)
class TextFigures:
    length_ratio: float
    text_similarity: float


def compare_texts(primary: str, shadow: str) -> TextFigures:
    return TextFigures(length_ratio(primary, shadow), text_similarity(primary, shadow))
