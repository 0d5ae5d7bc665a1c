"""The flags that say how shadow pairs are judged on meaning (issue 16): the semantic scorer
(``Flags.shadow_semantic``). Plain data and its validation; the store's JSON form comes with
``state``'s TypeAdapter (absent in older snapshots: the defaults), the proto translation is in
``convert``.

Zero values mean "the default" (proto3 cannot tell unset from zero), and the router resolves
them (``router_service.shadow._semantic``): sample_rate 0 scores every pair, an empty model is
the embedding task's, no provider is the engine Embed uses now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from control_service.errors import FieldViolation
from llmcore.vocabulary import ProviderName

if TYPE_CHECKING:
    from control_service.state import Catalog

MAX_CONCURRENCY = (0, 64)
QUEUE_SIZE = (0, 4096)
TIMEOUT_MS = (0, 600_000)


@dataclass(frozen=True, slots=True)
class ShadowSemantic:
    sample_rate: float = 0.0
    model: str = ""
    provider: ProviderName | None = None
    max_concurrency: int = 0
    queue_size: int = 0
    timeout_ms: int = 0


def _range(out: list[FieldViolation], path: str, value: float, lo: float, hi: float) -> None:
    if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        out.append(FieldViolation(path, f"must be in [{lo:g}, {hi:g}] (got {value:g})"))


def validate_semantic(s: ShadowSemantic, catalog: Catalog) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    p = "flags.shadow_semantic"
    _range(out, f"{p}.sample_rate", s.sample_rate, 0.0, 1.0)
    _range(out, f"{p}.max_concurrency", s.max_concurrency, *MAX_CONCURRENCY)
    _range(out, f"{p}.queue_size", s.queue_size, *QUEUE_SIZE)
    _range(out, f"{p}.timeout_ms", s.timeout_ms, *TIMEOUT_MS)
    name = s.model or catalog.model_for("embedding") or ""
    entry = catalog.model(name)
    if s.model and entry is None:
        out.append(FieldViolation(f"{p}.model", f"unknown model {s.model!r}"))
    elif s.model and entry is not None and not entry.embedding:
        out.append(FieldViolation(f"{p}.model", f"{s.model!r} is not an embedding model"))
    elif entry is not None and s.provider is not None and not entry.engine_name(s.provider):
        out.append(FieldViolation(f"{p}.provider", f"{s.provider} does not serve {name!r}"))
    return out


MAX_CALLS_PER_HOUR = (0, 100_000)
MAX_JUDGE_PROMPT_CHARS = 8000


@dataclass(frozen=True, slots=True)
class ShadowJudge:
    """``Flags.shadow_judge``; zero values are resolved by the router (sample_rate 0: all pairs,
    max_calls_per_hour 0: 60, timeout_ms 0: 30 s, empty prompt: the built-in one)."""

    enabled: bool = False
    model: str = ""
    provider: ProviderName | None = None
    sample_rate: float = 0.0
    max_calls_per_hour: int = 0
    timeout_ms: int = 0
    prompt: str = ""
    swap_check_rate: float = 0.0


def arms(catalog: Catalog) -> set[str]:
    """The models shadow pairs compare: every generation task's model (each pair is one logical
    model answered by both engines, so a model is an arm on either engine)."""
    return {m for t, m in catalog.task_models if t != "embedding"}


def validate_judge(j: ShadowJudge, catalog: Catalog) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    p = "flags.shadow_judge"
    _range(out, f"{p}.sample_rate", j.sample_rate, 0.0, 1.0)
    _range(out, f"{p}.swap_check_rate", j.swap_check_rate, 0.0, 1.0)
    _range(out, f"{p}.max_calls_per_hour", j.max_calls_per_hour, *MAX_CALLS_PER_HOUR)
    _range(out, f"{p}.timeout_ms", j.timeout_ms, *TIMEOUT_MS)
    if len(j.prompt) > MAX_JUDGE_PROMPT_CHARS:
        out.append(FieldViolation(f"{p}.prompt", f"at most {MAX_JUDGE_PROMPT_CHARS} characters"))
    elif j.prompt:
        try:
            j.prompt.format(question="", answer_a="", answer_b="")
        except (KeyError, IndexError, ValueError) as exc:
            out.append(FieldViolation(f"{p}.prompt", f"not a valid template: {exc}"))
        else:
            for name in ("{answer_a}", "{answer_b}"):
                if name not in j.prompt:
                    out.append(FieldViolation(f"{p}.prompt", f"must contain {name}"))
    if not j.enabled:
        return out
    entry = catalog.model(j.model) if j.model else None
    if not j.model:
        out.append(FieldViolation(f"{p}.model", "required when the judge is enabled"))
    elif entry is None:
        out.append(FieldViolation(f"{p}.model", f"unknown model {j.model!r}"))
    elif entry.embedding:
        out.append(FieldViolation(f"{p}.model", f"{j.model!r} is an embedding model"))
    elif j.model in arms(catalog):
        out.append(
            FieldViolation(
                f"{p}.model",
                f"{j.model!r} is one of the arms it would judge (a task's model); "
                "pick a model no task uses",
            )
        )
    if j.provider is None:
        out.append(FieldViolation(f"{p}.provider", "required when the judge is enabled"))
    elif entry is not None and not entry.engine_name(j.provider):
        out.append(FieldViolation(f"{p}.provider", f"{j.provider} does not serve {j.model!r}"))
    return out
