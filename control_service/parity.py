"""Embedding parity: do Ollama and vLLM give memOS the same vectors? Pure logic over vectors.

The same embedding model gives different vectors on Ollama (GGUF weights, its own pooling and
normalisation) and on vLLM (Hugging Face weights): public reports (ollama#4207, ollama#7085,
vllm#34910). memOS's index was built with Ollama's vectors; querying it with vLLM's silently
degrades retrieval. So before ``embedding_provider`` moves to vLLM, a corpus sample is embedded
on both engines and compared:

* **per-text cosine** of the two vectors of each text (are the spaces the same?), summarised by
  its mean and 10th percentile;
* **nearest-neighbour overlap@k**: for each text, its k nearest other texts of the corpus in
  Ollama's space and in vLLM's; the share they have in common, averaged (would a query retrieve
  the same documents?). This is what retrieval feels; two spaces can be rotated copies (cosine
  near 0, overlap 1) and then only a re-index, not a comparison, makes them usable together.

Passes when the p10 cosine and the mean overlap reach the thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from control_service.shadow_store import quantile

DEFAULT_K = 5
DEFAULT_MIN_COSINE_P10 = 0.95
DEFAULT_MIN_OVERLAP = 0.80
MAX_TEXTS = 1000
MIN_TEXTS = 3


def _unit(v: Sequence[float]) -> list[float]:
    n = math.sqrt(math.fsum(x * x for x in v))
    return [x / n for x in v] if n else [0.0] * len(v)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def neighbours(vectors: Sequence[Sequence[float]], i: int, k: int) -> set[int]:
    """The ``k`` texts nearest to text ``i`` (cosine; ties by index), itself excluded."""
    sims = sorted(
        ((-_dot(vectors[i], v), j) for j, v in enumerate(vectors) if j != i),
    )
    return {j for _, j in sims[:k]}


@dataclass(frozen=True, slots=True)
class TextParity:
    index: int
    cosine: float
    overlap: float


@dataclass(frozen=True, slots=True)
class Parity:
    texts: tuple[TextParity, ...]
    cosine_mean: float
    cosine_p10: float
    overlap_at_k: float
    k: int
    passed: bool
    detail: str


def measure(
    ollama: Sequence[Sequence[float]],
    vllm: Sequence[Sequence[float]],
    k: int = DEFAULT_K,
    min_cosine_p10: float = DEFAULT_MIN_COSINE_P10,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> Parity:
    """Compare the two engines' vectors of the same texts (in order). Vectors of different
    dimensions cannot be compared at all: cosine 0 and the overlap alone decides."""
    if len(ollama) != len(vllm):
        raise ValueError(f"{len(ollama)} Ollama vectors for {len(vllm)} vLLM vectors")
    a = [_unit(v) for v in ollama]
    b = [_unit(v) for v in vllm]
    k = max(1, min(k, len(a) - 1))
    rows: list[TextParity] = []
    for i in range(len(a)):
        cos = _dot(a[i], b[i]) if len(a[i]) == len(b[i]) else 0.0
        na, nb = neighbours(a, i, k), neighbours(b, i, k)
        rows.append(TextParity(i, max(-1.0, min(1.0, cos)), len(na & nb) / k))
    cosines = [r.cosine for r in rows]
    mean = math.fsum(cosines) / len(cosines) if cosines else 0.0
    p10 = quantile(cosines, 10)
    overlap = math.fsum(r.overlap for r in rows) / len(rows) if rows else 0.0
    problems = []
    if p10 < min_cosine_p10:
        problems.append(f"cosine p10 {p10:.3f} < {min_cosine_p10:g}")
    if overlap < min_overlap:
        problems.append(f"overlap@{k} {overlap:.2f} < {min_overlap:g}")
    return Parity(tuple(rows), mean, p10, overlap, k, not problems, "; ".join(problems))
