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
