"""Deterministic text: a word/punctuation tokenizer, seeded completions and hashed embeddings.

Nothing here is a language model. Output tokens are words drawn from a fixed vocabulary by a PRNG
seeded from (model, seed, prompt), so the same request always yields the same text. Every output
token re-tokenizes to exactly one token, which keeps counts consistent across turns.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson

from llmsim._meaning import concept_tokens

__all__ = [
    "apply_stop",
    "completion_seed",
    "count_tokens",
    "embed",
    "generate_tokens",
    "natural_length",
    "plan_output",
    "render_chat",
    "token_json",
    "tokenize",
    "truncate_dims",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words and single punctuation marks; whitespace is not a token."""
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def _content_text(content: Any) -> str:
    """Message content may be a string or an OpenAI list of parts; only text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p.get("text", "")
            for p in content
            if isinstance(p, Mapping) and isinstance(p.get("text", ""), str)
        ]
        return "\n".join(parts)
    return ""


def render_chat(messages: Iterable[Mapping[str, Any]]) -> str:
    """A ChatML-like template; its markers count as prompt tokens, like a real template's do."""
    out = [f"<|{m.get('role', 'user')}|>\n{_content_text(m.get('content'))}\n" for m in messages]
    out.append("<|assistant|>\n")
    return "".join(out)


# Ordered roughly by frequency; top_p < 1 keeps only the head of the list.
_VOCABULARY = """
    the of and to a in is that for it as with was on be by this are or from at which an have
    not they but has more can all we their one been its will also there other were would these
    when some what into than only new time two first most may any such used each then many
    memory model system data over after both about through where way between state process
    request answer token result value context query search source document graph node agent
    task plan step user response cache vector index retrieval knowledge summary question
    analysis evidence reason method service router engine stream batch queue latency throughput
    signal record event field should could must might every same under while during before
    without within across because however therefore since until often usually rather almost
    always never sometimes further important different possible available general specific
    relevant recent current simple clear local global early final common direct open small
    large high low good better best long short make use find give show take keep build check
    read write run test send store load query return include provide support require consider
    describe explain compare select update
"""
_WORDS: tuple[str, ...] = tuple(_VOCABULARY.split())
_CAP = {w: w[:1].upper() + w[1:] for w in _WORDS}
_PARAGRAPH_P = 0.12
_COMMA_P = 0.07


@lru_cache(maxsize=8192)
def _json_cached(tok: str) -> bytes:
    return orjson.dumps(tok)


def token_json(tok: str) -> bytes:
    """JSON string literal for a token (cached: the vocabulary is small)."""
    return _json_cached(tok)


def completion_seed(model: str, seed: int, prompt: str) -> int:
    h = hashlib.blake2b(f"{model}\x00{seed}\x00{prompt}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def natural_length(seed_int: int, base: int, jitter: float) -> int:
    """How long the answer would be without a token limit ("EOS" position)."""
    if jitter <= 0:
        return base
    u = ((seed_int >> 11) % 10_000) / 10_000.0  # uniform in [0, 1), independent of the text PRNG
    return max(1, round(base * (1.0 + jitter * (2.0 * u - 1.0))))


@lru_cache(maxsize=256)
def _generate_cached(seed_int: int, n: int, vocab: int) -> tuple[str, ...]:
    rng = random.Random(seed_int)
    rand = rng.random
    words = _WORDS[:vocab]
    k = len(words)
    out: list[str] = []
    append = out.append
    sentence_left = 5 + int(rand() * 10)
    start = True
    while len(out) < n:
        if sentence_left == 0:
            append(".")
            sentence_left = 5 + int(rand() * 10)
            start = True
            continue
        word = words[int(rand() * k)]
        if start:
            cap = _CAP[word]
            if not out:
                append(cap)
            elif rand() < _PARAGRAPH_P:
                append("\n\n" + cap)
            else:
                append(" " + cap)
            start = False
        elif rand() < _COMMA_P and out[-1] != ",":
            append(",")
            continue
        else:
            append(" " + word)
        sentence_left -= 1
    return tuple(out)


def generate_tokens(seed_int: int, n: int, top_p: float | None = None) -> list[str]:
    """``n`` output tokens (text pieces); ``top_p`` < 1 narrows the vocabulary."""
    vocab = len(_WORDS)
    if top_p is not None and 0 < top_p < 1:
        vocab = max(8, math.ceil(len(_WORDS) * top_p))
    return list(_generate_cached(seed_int, n, vocab))


def apply_stop(tokens: list[str], stops: Sequence[str]) -> tuple[list[str], str | None]:
    """Cut the output before the earliest stop string; returns (tokens, matched stop or None)."""
    stops = [s for s in stops if s]
    if not stops:
        return tokens, None
    text = "".join(tokens)
    best, matched = -1, None
    for s in stops:
        i = text.find(s)
        if i != -1 and (best == -1 or i < best):
            best, matched = i, s
    if matched is None:
        return tokens, None
    out: list[str] = []
    pos = 0
    for tok in tokens:
        end = pos + len(tok)
        if end <= best:
            out.append(tok)
        else:
            if best > pos:
                out.append(tok[: best - pos])
            break
        pos = end
    return out, matched


def embed(model: str, text: str, dim: int) -> list[float]:
    """A unit-length vector from a hash of (model, text). Carries no meaning."""
    raw = hashlib.shake_256(f"{model}\x00{text}".encode()).digest(dim * 2)
    ints = struct.unpack(f"<{dim}h", raw)
    norm = math.sqrt(math.fsum(v * v for v in ints)) or 1.0
    return [v / norm for v in ints]


def truncate_dims(vec: list[float], dims: int) -> list[float]:
    """Matryoshka-style truncation, renormalised."""
    if dims <= 0 or dims >= len(vec):
        return vec
    head = vec[:dims]
    norm = math.sqrt(math.fsum(v * v for v in head)) or 1.0
    return [v / norm for v in head]


def plan_output(
    *,
    model: str,
    seed: int,
    prompt: str,
    base_len: int,
    jitter: float,
    max_tokens: int | None = None,
    min_tokens: int = 0,
    ignore_eos: bool = False,
    stop: Sequence[str] = (),
    temperature: float | None = None,
    top_p: float | None = None,
    concept_answers: bool = False,
    unrelated: bool = False,
) -> tuple[list[str], str, str | None]:
    """Decide the answer: (tokens, finish_reason "stop"/"length", matched stop string or None).

    Temperature 0 is greedy decoding, so the seed does not matter then. ``concept_answers``
    words the prompt's meaning instead (``llmsim._meaning``; ``unrelated``: another meaning).
    """
    seed_int = completion_seed(model, 0 if temperature == 0 else seed, prompt)
    natural = max(natural_length(seed_int, base_len, jitter), min_tokens)
    if ignore_eos and max_tokens is not None:
        natural = max_tokens
    if max_tokens is not None and max_tokens < natural:
        n, finish = max_tokens, "length"
    else:
        n, finish = natural, "stop"
    if concept_answers:
        wording_seed = 0 if temperature == 0 else seed
        toks = concept_tokens(prompt, model, wording_seed, n, unrelated=unrelated)
    else:
        toks = generate_tokens(seed_int, n, top_p)
    if stop:
        cut, matched = apply_stop(toks, stop)
        if matched is not None:
            return cut, "stop", matched
    return toks, finish, None
