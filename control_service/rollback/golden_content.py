"""Golden expectations that check content, not just form (issue 16): what an answer must say.

Next to the form checks of ``golden`` (length, regex, JSON schema), a query may carry:

    checks:
      required_fields: [intent, confidence, "entities.0.name"]   # the answer is JSON with these
      keywords: [password, account, reset]                        # whole words, any case
      min_keywords: 2            # at least this many of them (default: all)
      reference: "Reset the password from the account page."     # the answer Ollama gave
      min_semantic: 0.8          # semantic similarity to the reference (cosine, one embedding
                                 # model on one engine, through the router's Embed)

The semantic score is measured by the runner (it needs the router); here it is only judged.
Reasoning (``<think>…</think>``) is cut before any content check: a model that names the right
keyword while thinking and answers wrong fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONTENT_KEYS = {"required_fields", "keywords", "min_keywords", "min_semantic"}
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```$", re.DOTALL)


class ContentError(ValueError):
    """A content check is malformed; the message names it (relative to the checks)."""


@dataclass(frozen=True, slots=True)
class ContentChecks:
    required_fields: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    min_keywords: int | None = None
    min_semantic: float | None = None


def answer_only(text: str) -> str:
    return _THINK.sub("", text).strip()


def _has(value: Any, path: str) -> bool:
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False
    return True


def check(c: ContentChecks, text: str, semantic: float | None) -> list[str]:
    """Every failed content expectation of ``text``; ``semantic`` is the measured similarity to
    the reference (None: it could not be measured, which fails a ``min_semantic``)."""
    out: list[str] = []
    answer = answer_only(text)
    if c.required_fields:
        body = answer
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1)
        try:
            value = json.loads(body)
        except ValueError:
            out.append("required_fields: the answer is not JSON")
        else:
            missing = [f for f in c.required_fields if not _has(value, f)]
            if missing:
                out.append(f"required_fields: missing {', '.join(missing)}")
    if c.keywords:
        words = set(re.findall(r"\w+", answer.casefold()))
        found = [k for k in c.keywords if set(re.findall(r"\w+", k.casefold())) <= words]
        need = c.min_keywords if c.min_keywords is not None else len(c.keywords)
        if len(found) < need:
            missing = [k for k in c.keywords if k not in found]
            out.append(
                f"keywords: {len(found)}/{len(c.keywords)} found, need {need} "
                f"(missing {', '.join(missing)})"
            )
    if c.min_semantic is not None:
        if semantic is None:
            out.append("min_semantic: the semantic similarity could not be measured")
        elif semantic < c.min_semantic:
            out.append(
                f"semantic similarity {semantic:.2f} to the reference < min_semantic "
                f"{c.min_semantic}"
            )
    return out


def parse(raw: Mapping[str, Any], has_reference: bool) -> ContentChecks | None:
    """The content checks of a ``checks`` mapping; None when it has none."""
    if not CONTENT_KEYS & set(raw):
        return None
    fields = _strings(raw.get("required_fields", []), "required_fields")
    keywords = _strings(raw.get("keywords", []), "keywords")
    min_kw = raw.get("min_keywords")
    if min_kw is not None and (
        isinstance(min_kw, bool) or not isinstance(min_kw, int) or not 0 < min_kw <= len(keywords)
    ):
        raise ContentError("min_keywords: an integer in [1, len(keywords)]")
    min_sem = raw.get("min_semantic")
    if min_sem is not None:
        if (
            isinstance(min_sem, bool)
            or not isinstance(min_sem, int | float)
            or not -1 <= min_sem <= 1
        ):
            raise ContentError("min_semantic: a number in [-1, 1]")
        if not has_reference:
            raise ContentError("min_semantic: needs a reference")
    return ContentChecks(fields, keywords, min_kw, float(min_sem) if min_sem is not None else None)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise ContentError(f"{where}: must be a non-empty string or a list of them")
    return tuple(items)
