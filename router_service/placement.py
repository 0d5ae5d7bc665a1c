"""Which engine and model answer a request, in order of preference. Plain logic, no I/O.

The engine: a pinned provider; else the task's own switch (seed: synthesis_provider, ...); else
vLLM for routing keys in the phase's vLLM share, the primary for the rest. Then the fallback
engine. On each engine: the requested model, then its fallback chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmcore.vocabulary import ProviderName, TaskName
from router_service.config.routing import RoutingConfig
from router_service.errors import ErrorKind, RouterError
from router_service.split import in_share


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (engine, model) to try; ``fallback`` when it is not the first choice."""

    provider: ProviderName
    model: str
    engine_model: str
    fallback: bool


def choose_provider(cfg: RoutingConfig, task: TaskName, routing_key: str) -> ProviderName:
    pinned = cfg.task_providers.get(task)
    if pinned is not None:
        return pinned
    if cfg.primary == "vllm":
        return "vllm"
    return "vllm" if in_share(routing_key, cfg.vllm_percent) else cfg.primary


def plan(
    cfg: RoutingConfig,
    task: TaskName,
    model_override: str,
    pinned: ProviderName | None,
    routing_key: str,
) -> list[Candidate]:
    """Candidates in order. A pinned provider is honoured strictly (no engine fallback)."""
    catalog = cfg.catalog
    model = model_override or catalog.model_for(task)
    if not catalog.knows(model):
        raise RouterError(ErrorKind.MODEL_NOT_FOUND, f"unknown model {model!r}", model=model)
    first = pinned or choose_provider(cfg, task, routing_key)
    providers = [first]
    if pinned is None:
        other: ProviderName = "ollama" if first == "vllm" else "vllm"
        # The configured fallback engine; and a request sent to vLLM by the split can always
        # fall back to the primary.
        if cfg.fallback == other or (first != cfg.primary and other == cfg.primary):
            providers.append(other)
    out: list[Candidate] = []
    for provider in providers:
        for m in catalog.chain(model):
            engine_model = catalog.engine_name(m, provider)
            if engine_model is None:
                continue
            fallback = bool(out) or m != model or provider != first
            out.append(Candidate(provider, m, engine_model, fallback))
    if not out:
        raise RouterError(
            ErrorKind.MODEL_NOT_FOUND,
            f"no engine serves model {model!r} (engines tried: {', '.join(providers)})",
            provider=first,
            model=model,
        )
    return out
