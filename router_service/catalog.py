"""The model catalogue: logical models, what each engine calls them, per-task defaults, fallbacks.

memOS speaks Ollama's names (``qwen3:8b``); vLLM serves Hugging Face ids (``Qwen/Qwen3-8B``).
The router always reasons in logical (Ollama-style) names and translates at the provider edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmcore.catalog import (
    DEFAULT_CAPABILITIES,
    DEFAULT_ENGINE_NAMES,
    DEFAULT_FALLBACKS,
    DEFAULT_TASK_MODELS,
)
from llmcore.vocabulary import ProviderName, TaskName

__all__ = ["DEFAULT_ENGINE_NAMES", "DEFAULT_FALLBACKS", "DEFAULT_TASK_MODELS", "Catalog"]


@dataclass(frozen=True)
class Catalog:
    """Immutable view of the model catalogue used for one request."""

    engine_names: Mapping[str, Mapping[ProviderName, str]]
    task_models: Mapping[TaskName, str]
    fallbacks: Mapping[str, Sequence[str]]
    # model → capabilities given in the pushed catalogue; a model without an entry has the
    # built-in ones of its name (llmcore.catalog.DEFAULT_CAPABILITIES).
    capabilities: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def capabilities_of(self, model: str) -> frozenset[str]:
        given = self.capabilities.get(model)
        if given is not None:
            return given
        return frozenset(DEFAULT_CAPABILITIES.get(model, ()))

    def knows(self, model: str) -> bool:
        return model in self.engine_names

    def engine_name(self, model: str, provider: ProviderName) -> str | None:
        """The name ``provider`` knows ``model`` by, or None when that engine does not serve it."""
        return self.engine_names.get(model, {}).get(provider)

    def model_for(self, task: TaskName) -> str:
        return self.task_models[task]

    def chain(self, model: str) -> list[str]:
        """``model`` followed by its fallbacks, without repeats."""
        out = [model]
        for m in self.fallbacks.get(model, ()):
            if m not in out:
                out.append(m)
        return out
