"""Golden queries (seed 7.3: "all golden queries pass on vLLM"): the file format and the checks.
Pure: parsing a document and judging an answer; running the queries is ``golden_runner``.

A golden file is YAML::

    defaults:            # optional, applied to every query
      max_tokens: 64
      temperature: 0
      seed: 7
    queries:
      - name: capital    # unique
        prompt: "What is the capital of France? One word."
        system: ""       # optional
        task: analysis   # optional memOS task (default analysis)
        model: ""        # optional logical model (default: the task's)
        checks:
          min_length: 1             # characters
          max_length: 200
          contains: ["Paris"]       # every one must occur
          not_contains: ["London"]
          regex: ['^\\w+']          # every one must match (re.search)
          ignore_case: true         # for contains, not_contains and regex
          json_schema: {type: object, required: [city]}   # the answer must be such JSON
          reference: "Paris"        # with min_similarity: word-sequence similarity in [0, 1]
          min_similarity: 0.5
          required_fields: [city]   # content (golden_content): JSON fields the answer must have,
          keywords: [paris]         #   words it must say (min_keywords: at least N of them),
          min_semantic: 0.8         #   semantic similarity to the reference it must reach

A query passes when every check holds. ``json_schema`` is JSON Schema draft 2020-12 (the
``jsonschema`` library; see ``_jsonschema``); the answer may be wrapped in a Markdown code fence.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import yaml

from control_service.rollback import _jsonschema, golden_content
from llmcore.vocabulary import TaskName

_TASKS: tuple[str, ...] = get_args(TaskName)
_QUERY_KEYS = {"name", "prompt", "system", "task", "model", "max_tokens", "temperature", "seed"}
_CHECK_KEYS = {
    "min_length",
    "max_length",
    "contains",
    "not_contains",
    "regex",
    "ignore_case",
    "json_schema",
    "reference",
    "min_similarity",
    *golden_content.CONTENT_KEYS,  # what the answer must say (issue 16)
}
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)
_WORD = re.compile(r"\w+")


class GoldenFileError(ValueError):
    """The golden file is unusable; the message names the bad entry."""


@dataclass(frozen=True, slots=True)
class Checks:
    min_length: int | None = None
    max_length: int | None = None
    contains: tuple[str, ...] = ()
    not_contains: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    ignore_case: bool = False
    json_schema: Mapping[str, Any] | bool | None = None
    reference: str | None = None
    min_similarity: float | None = None
    # Content expectations (required JSON fields, keywords, semantic similarity to reference).
    content: golden_content.ContentChecks | None = None


@dataclass(frozen=True, slots=True)
class GoldenQuery:
    name: str
    prompt: str
    checks: Checks = field(default_factory=Checks)
    system: str | None = None
    task: TaskName | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One query's outcome. ``error`` is the engine/router error when there was no answer."""

    name: str
    passed: bool
    failures: tuple[str, ...] = ()
    error: str = ""
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class GoldenRun:
    """One run of the whole file. ``problem`` says why there was no usable run (no file, no
    router configured, router unreachable): a measurement error, never a failed query."""

    at: float
    results: tuple[QueryResult, ...] = ()
    problem: str = ""

    @property
    def failed(self) -> tuple[QueryResult, ...]:
        return tuple(r for r in self.results if not r.passed)


def similarity(a: str, b: str) -> float:
    """Word-sequence similarity in [0, 1] (difflib's ratio over lower-cased words)."""
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def _json_of(text: str) -> Any:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    return json.loads(body)


def check_answer(q: GoldenQuery, text: str, semantic: float | None = None) -> tuple[str, ...]:
    """Every failed check of ``text`` as an answer to ``q`` (empty: it passes); ``semantic`` is
    the measured semantic similarity to the reference, for ``min_semantic``."""
    c = q.checks
    out: list[str] = []
    if c.min_length is not None and len(text) < c.min_length:
        out.append(f"length {len(text)} < min_length {c.min_length}")
    if c.max_length is not None and len(text) > c.max_length:
        out.append(f"length {len(text)} > max_length {c.max_length}")
    hay = text.lower() if c.ignore_case else text
    for needle in c.contains:
        if (needle.lower() if c.ignore_case else needle) not in hay:
            out.append(f"does not contain {needle!r}")
    for needle in c.not_contains:
        if (needle.lower() if c.ignore_case else needle) in hay:
            out.append(f"contains {needle!r}")
    flags = re.IGNORECASE if c.ignore_case else 0
    for pattern in c.regex:
        if not re.search(pattern, text, flags):
            out.append(f"does not match {pattern!r}")
    if c.json_schema is not None:
        try:
            value = _json_of(text)
        except ValueError as exc:
            out.append(f"not JSON: {exc}")
        else:
            out += [f"json_schema: {e}" for e in _jsonschema.validate(value, c.json_schema)]
    if c.reference is not None and c.min_similarity is not None:
        sim = similarity(text, c.reference)
        if sim < c.min_similarity:
            out.append(f"similarity {sim:.2f} to the reference < min_similarity {c.min_similarity}")
    if c.content is not None:
        out += golden_content.check(c.content, text, semantic)
    return tuple(out)


# --- parsing --------------------------------------------------------------------------------


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise GoldenFileError(f"{where}: must be a string or a list of strings")
    return tuple(items)


def _int(value: Any, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise GoldenFileError(f"{where}: must be an integer >= {lo}")
    return value


def _checks(raw: Any, where: str) -> Checks:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise GoldenFileError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - _CHECK_KEYS)
    if unknown:
        raise GoldenFileError(f"{where}: unknown check(s) {', '.join(map(str, unknown))}")
    regex = _strings(raw.get("regex", []), f"{where}.regex")
    for i, pattern in enumerate(regex):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise GoldenFileError(f"{where}.regex[{i}]: {exc}") from exc
    schema = raw.get("json_schema")
    if schema is not None:
        problems = _jsonschema.check_schema(schema)
        if problems:
            at = f"{where}.json_schema"
            named = [(f"{at}.{place}" if place else at, what) for place, what in problems]
            raise GoldenFileError("; ".join(f"{name}: {what}" for name, what in named))
    reference, min_sim = raw.get("reference"), raw.get("min_similarity")
    if reference is not None and not isinstance(reference, str):
        raise GoldenFileError(f"{where}.reference: must be a string")
    if min_sim is not None:
        if isinstance(min_sim, bool) or not isinstance(min_sim, int | float):
            raise GoldenFileError(f"{where}.min_similarity: must be a number in [0, 1]")
        if not 0 <= min_sim <= 1:
            raise GoldenFileError(f"{where}.min_similarity: must be a number in [0, 1]")
        if reference is None:
            raise GoldenFileError(f"{where}.min_similarity: needs a reference")
    try:
        content = golden_content.parse(raw, reference is not None)
    except golden_content.ContentError as exc:
        raise GoldenFileError(f"{where}.{exc}") from exc
    checks = Checks(
        content=content,
        min_length=_int(raw["min_length"], f"{where}.min_length") if "min_length" in raw else None,
        max_length=_int(raw["max_length"], f"{where}.max_length") if "max_length" in raw else None,
        contains=_strings(raw.get("contains", []), f"{where}.contains"),
        not_contains=_strings(raw.get("not_contains", []), f"{where}.not_contains"),
        regex=regex,
        ignore_case=bool(raw.get("ignore_case", False)),
        json_schema=schema,
        reference=reference,
        min_similarity=float(min_sim) if min_sim is not None else None,
    )
    if checks == Checks(ignore_case=checks.ignore_case):
        raise GoldenFileError(f"{where}: needs at least one check")
    return checks


def _query(raw: Any, defaults: Mapping[str, Any], where: str) -> GoldenQuery:
    if not isinstance(raw, Mapping):
        raise GoldenFileError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - _QUERY_KEYS - {"checks"})
    if unknown:
        raise GoldenFileError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    merged = {**defaults, **raw}
    name, prompt = merged.get("name"), merged.get("prompt")
    if not isinstance(name, str) or not name:
        raise GoldenFileError(f"{where}.name: a non-empty string is required")
    if not isinstance(prompt, str) or not prompt:
        raise GoldenFileError(f"{where}.prompt: a non-empty string is required")
    task = merged.get("task")
    if task is not None and task not in _TASKS:
        raise GoldenFileError(f"{where}.task: unknown task {task!r}")
    if task == "embedding":
        raise GoldenFileError(f"{where}.task: golden queries are generations, not embeddings")
    temperature = merged.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise GoldenFileError(f"{where}.temperature: must be a number")
    for key in ("system", "model"):
        if merged.get(key) is not None and not isinstance(merged[key], str):
            raise GoldenFileError(f"{where}.{key}: must be a string")
    return GoldenQuery(
        name=name,
        prompt=prompt,
        checks=_checks(raw.get("checks"), f"{where}.checks"),
        system=merged.get("system") or None,
        task=task,
        model=merged.get("model") or None,
        max_tokens=(
            _int(merged["max_tokens"], f"{where}.max_tokens", 1)
            if merged.get("max_tokens") is not None
            else None
        ),
        temperature=float(temperature) if temperature is not None else None,
        seed=_int(merged["seed"], f"{where}.seed") if merged.get("seed") is not None else None,
    )


def parse(document: Any) -> tuple[GoldenQuery, ...]:
    """The queries of a loaded golden document; :class:`GoldenFileError` names what is wrong."""
    if not isinstance(document, Mapping):
        raise GoldenFileError("the top level must be a mapping with 'queries'")
    unknown = sorted(set(document) - {"defaults", "queries"})
    if unknown:
        raise GoldenFileError(f"unknown top-level key(s) {', '.join(map(str, unknown))}")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - (_QUERY_KEYS - {"name", "prompt"}):
        raise GoldenFileError(
            "defaults: a mapping of system, task, model, max_tokens, temperature, seed"
        )
    raw: Sequence[Any] = document.get("queries") or []
    if not isinstance(raw, list) or not raw:
        raise GoldenFileError("queries: a non-empty list is required")
    queries = tuple(_query(q, defaults, f"queries[{i}]") for i, q in enumerate(raw))
    names = [q.name for q in queries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GoldenFileError(f"queries: duplicate name(s) {', '.join(dupes)}")
    return queries


def loads(text: str) -> tuple[GoldenQuery, ...]:
    """Parse golden YAML text."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GoldenFileError(f"not valid YAML: {exc}") from exc
    return parse(document)
