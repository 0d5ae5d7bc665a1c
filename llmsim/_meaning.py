"""A deterministic stand-in for meaning, so the gateway's semantic checks can be tested without a
language model (issue 16).

Why not a real embedding model: the suite runs offline on two CPU cores, and what the tests need
is *controlled* meaning: two answers that say the same thing in other words, an answer that says
something else with the same function words, two engines whose vectors agree or disagree by a
known amount. A small bag-of-concepts model gives exactly that and nothing a test cannot predict.

* **Concepts.** ``CONCEPTS`` groups synonyms ("fast", "quick", "rapid", "speedy"); a word outside
  the table is its own concept; ``STOPWORDS`` carry no meaning.
* **Concept answers** (``answer_mode="concepts"``): the *meaning* of an answer is a function of
  the prompt alone: the concepts the prompt names, in order, then concepts drawn from a hash of the
  prompt. The *wording* (which synonym, which connective) is drawn from (model, seed, prompt). So
  Ollama's and vLLM's simulators answer the same prompt with the same meaning in different
  words: lexically different, semantically equal. With ``unrelated_answers`` the meaning is drawn
  from another key: a fluent, equally long answer about something else, with the same function
  words (its lexical score stays close to a paraphrase's; its semantic score collapses).
* **Concept embeddings** (``embedding_mode="concepts"``): feature hashing of the concepts of the
  text (each concept to one signed dimension), normalised. Synonyms land on the same dimension, so
  a paraphrase has cosine 1. The vector does not depend on the model name, so two engines serving
  "the same" model agree; ``embedding_skew`` (0..1) mixes in an engine-specific hash vector, the
  way a GGUF quantisation shifts vectors: two simulators with different skews disagree.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import struct

CONCEPTS: tuple[tuple[str, ...], ...] = (
    ("fast", "quick", "rapid", "speedy"),
    ("slow", "sluggish", "unhurried", "leisurely"),
    ("engine", "server", "backend", "runtime"),
    ("router", "gateway", "proxy", "dispatcher"),
    ("answer", "reply", "response", "result"),
    ("question", "query", "prompt", "request"),
    ("fail", "break", "crash", "falter"),
    ("fallback", "backup", "failover", "spare"),
    ("memory", "storage", "recall", "cache"),
    ("model", "network", "predictor", "learner"),
    ("large", "big", "huge", "vast"),
    ("small", "little", "tiny", "compact"),
    ("error", "fault", "mistake", "defect"),
    ("batch", "group", "bundle", "cluster"),
    ("latency", "delay", "lag", "wait"),
    ("throughput", "capacity", "bandwidth", "volume"),
    ("safe", "secure", "protected", "guarded"),
    ("document", "file", "record", "text"),
    ("search", "lookup", "retrieval", "scan"),
    ("summary", "digest", "synopsis", "overview"),
    ("improve", "boost", "enhance", "raise"),
    ("reduce", "cut", "lower", "shrink"),
    ("user", "customer", "client", "person"),
    ("password", "passphrase", "credential", "secret"),
    ("account", "profile", "login", "membership"),
    ("billing", "invoice", "payment", "charge"),
    ("continuous", "ongoing", "steady", "constant"),
    ("benefit", "advantage", "gain", "upside"),
    ("city", "town", "capital", "metropolis"),
    ("france", "paris", "french", "gaul"),
    ("ocean", "sea", "tide", "surf"),
    ("garden", "flower", "tulip", "blossom"),
    ("music", "song", "melody", "tune"),
    ("mountain", "peak", "summit", "ridge"),
)
_STOPWORDS_TEXT = """
    the a an of and or to in on at by for with is are was were be been it its this that these
    those as from into than then so such very also when why how what which who can should could
    would will may might must do does did not no yes two one you your we our they their there
    here because while about explain sentences sentence word words remains
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_CONCEPT_OF = {w: group[0] for group in CONCEPTS for w in group}
_CONNECTIVES = (("is", "and"), ("was", "and"), ("is", "while"), ("remains", "so"))
_WORD = re.compile(r"[a-z]+")


def concept(word: str) -> str | None:
    """The concept a (lower-case) word stands for; None for a stopword."""
    if word in STOPWORDS:
        return None
    return _CONCEPT_OF.get(word, word)


def concepts_of(text: str) -> list[str]:
    return [c for w in _WORD.findall(text.casefold()) if (c := concept(w)) is not None]


def _rng(*parts: str) -> random.Random:
    h = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "little"))


def answer_concepts(prompt: str, n: int, *, unrelated: bool = False) -> list[str]:
    """``n`` concepts the answer to ``prompt`` is about (the table's concepts the prompt names,
    then a hash-drawn rest), or an unrelated set."""
    known = [CONCEPTS.index(g) for g in CONCEPTS]
    named = [] if unrelated else [c for c in concepts_of(prompt) if c in _CONCEPT_OF]
    rng = _rng("unrelated" if unrelated else "meaning", prompt)
    out = list(dict.fromkeys(named))[:n]
    while len(out) < n:
        out.append(CONCEPTS[rng.choice(known)][0])
    return out


def concept_tokens(prompt: str, model: str, seed: int, n: int, *, unrelated: bool) -> list[str]:
    """``n`` output tokens saying ``answer_concepts(prompt)`` in ``model``'s words: sentences of
    "The A is B and C." (7 tokens) whose synonyms and connectives depend on (model, seed)."""
    wording = _rng("wording", model, str(seed), prompt)
    meaning = answer_concepts(prompt, max(3, math.ceil(n / 7) * 3), unrelated=unrelated)
    groups = {g[0]: g for g in CONCEPTS}
    out: list[str] = []
    i = 0
    while len(out) < n:
        verb, conj = wording.choice(_CONNECTIVES)
        words = [groups[c][wording.randrange(4)] if c in groups else c for c in meaning[i : i + 3]]
        i += 3
        sentence = ["The", words[0], verb, words[1], conj, words[2], "."]
        for tok in sentence:
            if len(out) == n:
                break
            glue = "" if not out or tok == "." else " "
            out.append(glue + tok)
    return out


def concept_embed(text: str, dim: int, *, skew: float = 0.0, skew_key: str = "") -> list[float]:
    """The text's concepts, feature-hashed into ``dim`` signed dimensions, mixed with ``skew``
    of an engine-specific (``skew_key``) hash vector, unit length."""
    vec = [0.0] * dim
    for c in concepts_of(text):
        h = int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(math.fsum(v * v for v in vec))
    if norm:
        vec = [v / norm for v in vec]
    if skew > 0:
        raw = hashlib.shake_256(f"{skew_key}\x00{text}".encode()).digest(dim * 2)
        noise = struct.unpack(f"<{dim}h", raw)
        nn = math.sqrt(math.fsum(v * v for v in noise)) or 1.0
        vec = [(1 - skew) * v + skew * w / nn for v, w in zip(vec, noise, strict=True)]
        norm = math.sqrt(math.fsum(v * v for v in vec))
        if norm:
            vec = [v / norm for v in vec]
    return vec
