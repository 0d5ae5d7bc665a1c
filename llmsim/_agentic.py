"""What a simulated model does with the agentic parts of a request: thinks before answering,
answers JSON valid for a schema, calls tools, looks at images, truncates a long prompt.

Deterministic like the rest of the simulator: the same request gives the same thinking, JSON
and calls. Tool-call arguments are seeded by the prompt only (not the model name), so both
flavours call the same tool with the same arguments, as two good engines would.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmsim._textgen import generate_tokens

__all__ = [
    "Thinking",
    "ToolSpec",
    "bad_images",
    "json_text",
    "pieces",
    "plan_tool_calls",
    "think_tokens",
]

_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")
# Thinking lengths by effort, in tokens ("on" is the model's default effort).
_THINK_LEN = {"low": 12, "on": 24, "medium": 24, "high": 48, "max": 64}
_WORDS = ("alpha", "beta", "gamma", "delta", "memory", "graph", "query", "answer", "source")


def pieces(text: str) -> list[str]:
    """``text`` as output tokens that join back to exactly ``text``."""
    out = _PIECE.findall(text)
    rest = len(text) - sum(len(p) for p in out)
    if rest:
        out.append(text[-rest:])
    return out


@dataclass(frozen=True, slots=True)
class Thinking:
    level: str  # on, low, medium, high, max


def think_tokens(level: str, seed_int: int) -> list[str]:
    """The reasoning of one answer: a few sentences, longer for higher effort."""
    n = _THINK_LEN.get(level, 24)
    toks = generate_tokens(seed_int ^ 0x5EED, n)
    if toks:
        toks[0] = "Okay" if toks[0] else toks[0]
    return toks


def _seed(*parts: str) -> random.Random:
    h = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8)
    return random.Random(int.from_bytes(h.digest(), "little"))


def instance(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value valid for ``schema`` (the JSON Schema subset structured output uses: type,
    properties/required, items, enum, const, anyOf/oneOf, min/max)."""
    if not isinstance(schema, Mapping) or depth > 8:
        return rng.choice(_WORDS)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return instance(schema[key][0], rng, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, Mapping):
            return {}
        return {k: instance(v, rng, depth + 1) for k, v in props.items()}
    if kind == "array":
        lo = int(schema.get("minItems", 1))
        hi = max(lo, min(int(schema.get("maxItems", lo + 2)), lo + 3))
        return [
            instance(schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(lo, hi))
        ]
    if kind == "integer":
        ilo = int(schema.get("minimum", 0))
        return rng.randint(ilo, max(ilo, int(schema.get("maximum", ilo + 100))))
    if kind == "number":
        flo = float(schema.get("minimum", 0.0))
        fhi = float(schema.get("maximum", flo + 1.0))
        return round(flo + (fhi - flo) * rng.random(), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    n = max(int(schema.get("minLength", 1)), 1)
    words = [rng.choice(_WORDS) for _ in range(max(1, min(n, 3)))]
    text = " ".join(words)
    return text if len(text) >= n else text + "x" * (n - len(text))


def json_text(schema: Mapping[str, Any] | None, model: str, prompt: str) -> str:
    """The answer of a JSON-constrained request: valid for ``schema``, or a small object. Seeded
    by the prompt, not the model: a structured answer is where two good engines agree."""
    rng = _seed("json", prompt)
    if schema is None:
        return orjson.dumps({"answer": " ".join(rng.choice(_WORDS) for _ in range(4))}).decode()
    return orjson.dumps(instance(schema, rng)).decode()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


def plan_tool_calls(
    tools: Sequence[ToolSpec], choice: str | None, prompt: str, last_role: str
) -> list[tuple[str, dict[str, Any]]]:
    """The calls the model makes: ``[(name, arguments)]``.

    Forced (required, or a named function): the first (or the named) tool. Auto: the first tool
    whose name appears in the prompt. Never right after a tool result (the model answers it),
    never with ``none``.
    """
    if not tools or choice == "none" or last_role == "tool":
        return []
    chosen: ToolSpec | None = None
    if choice == "required":
        chosen = tools[0]
    elif choice not in (None, "auto"):
        chosen = next((t for t in tools if t.name == choice), None)
    else:
        chosen = next((t for t in tools if t.name in prompt), None)
    if chosen is None:
        return []
    args = instance(chosen.parameters or {"type": "object"}, _seed("tool", chosen.name, prompt))
    return [(chosen.name, args if isinstance(args, dict) else {"value": args})]


def bad_images(images: Sequence[Any]) -> str | None:
    """Why these base64 images are unusable, or None."""
    for img in images:
        if not isinstance(img, str):
            return "images must be base64 strings"
        try:
            base64.b64decode(img, validate=True)
        except (binascii.Error, ValueError):
            return "invalid image data: not base64"
    return None


@dataclass(slots=True)
class AgenticPlan:
    """The agentic parts of one request, read from either flavour's body."""

    think: str | None = None  # None: no thinking; else the effort ("on", "low", ...)
    json: bool = False
    schema: Mapping[str, Any] | None = None
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str | None = None  # None/auto, none, required, or a function name
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class Composed:
    tokens: list[str]
    n_think: int
    finish: str
    stop_reason: str | None
    tool_calls: list[tuple[str, dict[str, Any]]]


def compose(
    plan: AgenticPlan,
    content: list[str],
    finish: str,
    stop_reason: str | None,
    *,
    model: str,
    prompt: str,
    seed_int: int,
    max_tokens: int | None,
    last_role: str,
) -> Composed:
    """Thinking first, then the answer (JSON when constrained), then any tool calls; the token
    limit counts thinking too (a model can think itself out of budget: LENGTH, no answer)."""
    think = think_tokens(plan.think, seed_int) if plan.think else []
    calls = plan_tool_calls(plan.tools, plan.tool_choice, prompt, last_role)
    if calls:
        content, finish, stop_reason = [], "stop", None
    elif plan.json:
        content = pieces(json_text(plan.schema, model, prompt))
        finish, stop_reason = "stop", None
    if not think and not plan.json and not calls:
        return Composed(content, 0, finish, stop_reason, [])
    tokens = think + content
    if max_tokens is not None and len(tokens) > max_tokens:
        return Composed(tokens[:max_tokens], min(len(think), max_tokens), "length", None, [])
    return Composed(tokens, len(think), finish, stop_reason, calls)


def logprob_entry(tok: str, top: int) -> dict[str, Any]:
    """A deterministic log probability for a token, with ``top`` alternatives."""
    h = hashlib.blake2b(tok.encode(), digest_size=2).digest()
    lp = -round((h[0] / 255.0) * 2.0, 4)
    alts = [{"token": w, "logprob": round(lp - 1.0 - i, 4)} for i, w in enumerate(_WORDS[:top])]
    return {"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": alts}
