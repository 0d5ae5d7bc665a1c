"""Prompt sets: a shared system prompt plus per-query context, from YAML or JSONL.

YAML (the default file, ``prompts/memos_agentic.yaml``)::

    system: <shared system prompt>        # optional
    max_tokens: 256                       # optional default for every prompt
    prompts:
      - {id: q1, task: synthesis, context: "...", question: "...", max_tokens: 64}

JSONL: one prompt object per line with the same fields (``question`` may be called ``prompt``);
a line that holds only ``system`` (and optionally ``max_tokens``) sets the defaults for the lines
after it. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

TASKS = (
    "classification",
    "analysis",
    "synthesis",
    "reflection",
    "retrieval_evaluation",
    "verification",
)
DEFAULT_PROMPTS_NAME = "memos_agentic.yaml"


class PromptFileError(ValueError):
    """The prompt file is missing, unreadable or malformed; the message names the place."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One benchmark query: the messages every engine gets, and its length cap."""

    id: str
    task: str
    system: str
    user: str
    max_tokens: int | None

    def messages(self) -> list[dict[str, str]]:
        out = [{"role": "user", "content": self.user}]
        if self.system:
            out.insert(0, {"role": "system", "content": self.system})
        return out


def default_prompts_text() -> str:
    return (
        resources.files("llmtools.llmbench").joinpath("prompts", DEFAULT_PROMPTS_NAME).read_text()
    )


def load_prompts(path: Path | None, max_tokens: int | None = None) -> list[Prompt]:
    """The prompts of ``path`` (the packaged default when None). ``max_tokens`` overrides every
    prompt's own cap when given."""
    if path is None:
        prompts = parse_yaml(default_prompts_text(), DEFAULT_PROMPTS_NAME)
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise PromptFileError(f"{path}: {exc.strerror or exc}") from exc
        if path.suffix in (".jsonl", ".ndjson"):
            prompts = parse_jsonl(text, str(path))
        else:
            prompts = parse_yaml(text, str(path))
    if max_tokens is not None:
        prompts = [
            Prompt(p.id, p.task, p.system, p.user, max_tokens) for p in prompts
        ]  # fmt: skip
    return prompts


def parse_yaml(text: str, where: str) -> list[Prompt]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptFileError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise PromptFileError(f"{where}: top level must be a mapping with a 'prompts' list")
    system = _opt_str(doc.get("system"), f"{where}: system")
    default_max = _opt_int(doc.get("max_tokens"), f"{where}: max_tokens")
    items = doc.get("prompts")
    if not isinstance(items, list) or not items:
        raise PromptFileError(f"{where}: 'prompts' must be a non-empty list")
    return [
        _prompt(item, f"{where}: prompts[{i}]", i, system, default_max)
        for i, item in enumerate(items)
    ]


def parse_jsonl(text: str, where: str) -> list[Prompt]:
    system = ""
    default_max: int | None = None
    out: list[Prompt] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        place = f"{where}:{lineno}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise PromptFileError(f"{place}: not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise PromptFileError(f"{place}: each line must be a JSON object")
        if set(obj) <= {"system", "max_tokens"} and "system" in obj:
            system = _opt_str(obj.get("system"), f"{place}: system")
            default_max = _opt_int(obj.get("max_tokens"), f"{place}: max_tokens")
            continue
        line_system = _opt_str(obj.get("system"), f"{place}: system") or system
        out.append(_prompt(obj, place, len(out), line_system, default_max))
    if not out:
        raise PromptFileError(f"{where}: no prompts")
    return out


def _prompt(
    item: Any, place: str, index: int, system: str, default_max: int | None
) -> Prompt:  # fmt: skip
    if not isinstance(item, dict):
        raise PromptFileError(f"{place}: must be a mapping")
    question = _opt_str(item.get("question", item.get("prompt")), f"{place}: question")
    if not question.strip():
        raise PromptFileError(f"{place}: 'question' (or 'prompt') is required")
    context = _opt_str(item.get("context"), f"{place}: context")
    task = _opt_str(item.get("task"), f"{place}: task") or "analysis"
    if task not in TASKS:
        raise PromptFileError(f"{place}: task must be one of {', '.join(TASKS)}, not {task!r}")
    max_tokens = _opt_int(item.get("max_tokens"), f"{place}: max_tokens")
    user = question.strip()
    if context.strip():
        user = f"Task: {task}\n\nContext:\n{context.strip()}\n\nRequest:\n{user}"
    return Prompt(
        id=_opt_str(item.get("id"), f"{place}: id") or f"p{index}",
        task=task,
        system=system.strip(),
        user=user,
        max_tokens=max_tokens if max_tokens is not None else default_max,
    )


def _opt_str(value: Any, place: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PromptFileError(f"{place} must be a string")
    return value


def _opt_int(value: Any, place: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PromptFileError(f"{place} must be a positive integer")
    return value
