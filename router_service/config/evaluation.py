"""Per-snapshot options of the shadow pair evaluation (issue 16): the semantic scorer, from
``flags.shadow_semantic`` with its zero values resolved to the documented defaults. Plain data;
``router_service.shadow._semantic`` uses them."""

from __future__ import annotations

from dataclasses import dataclass

from llmcore.vocabulary import ProviderName

DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class SemanticOptions:
    """``flags.shadow_semantic`` with its zero values resolved."""

    sample_rate: float = 1.0
    model: str = ""  # empty: the embedding task's model
    provider: ProviderName | None = None  # None: the engine Embed uses now
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    queue_size: int = 0  # calls waiting for a slot beyond max_concurrency
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def resolve(
        cls,
        sample_rate: float,
        model: str,
        provider: ProviderName | None,
        max_concurrency: int,
        queue_size: int,
        timeout_ms: int,
    ) -> SemanticOptions:
        return cls(
            sample_rate=sample_rate or 1.0,
            model=model,
            provider=provider,
            max_concurrency=max_concurrency or DEFAULT_MAX_CONCURRENCY,
            queue_size=queue_size,
            timeout_s=(timeout_ms / 1000) if timeout_ms else DEFAULT_TIMEOUT_S,
        )


DEFAULT_JUDGE_CALLS_PER_HOUR = 60
DEFAULT_JUDGE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class JudgeOptions:
    """``flags.shadow_judge`` with its zero values resolved; ``enabled`` False: no judge."""

    enabled: bool = False
    model: str = ""
    provider: ProviderName | None = None
    sample_rate: float = 1.0
    max_calls_per_hour: int = DEFAULT_JUDGE_CALLS_PER_HOUR
    timeout_s: float = DEFAULT_JUDGE_TIMEOUT_S
    prompt: str = ""  # empty: router_service.shadow._judge.DEFAULT_PROMPT
    swap_check_rate: float = 0.0
