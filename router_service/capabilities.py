"""Which candidates can serve what a request asks. Plain logic, no I/O.

A feature an engine or a model cannot do is never dropped. The requested model must have every
capability the request needs (thinking, tools, vision), else the request fails with
FAILED_PRECONDITION naming the field: a feature never silently switches the model. A fallback
model without one is skipped, and so is an engine that lacks an engine-level feature (an engine
option, a thinking budget, a forced tool call) as long as another candidate can serve it.
"""

from __future__ import annotations

from llmcore.features import engine_knows
from llmcore.vocabulary import ProviderName
from router_service.catalog import Catalog
from router_service.errors import ErrorKind, FieldViolation, RouterError
from router_service.placement import Candidate
from router_service.values import ChatMessage, Features


def model_unsupported(
    features: Features, messages: tuple[ChatMessage, ...], model: str, caps: frozenset[str]
) -> FieldViolation | None:
    """The first thing ``model`` (on any engine) cannot do for this request, or None."""
    if features.reasoning.on and "thinking" not in caps:
        return FieldViolation("reasoning.level", f"{model} has no thinking phase")
    if features.tools and "tools" not in caps:
        return FieldViolation("tools", f"{model} does not call tools")
    for i, m in enumerate(messages):
        if m.images and "vision" not in caps:
            return FieldViolation(f"messages[{i}].images", f"{model} is not a vision model")
    return None


def unsupported(
    features: Features,
    messages: tuple[ChatMessage, ...],
    provider: ProviderName,
    model: str,
    caps: frozenset[str],
) -> FieldViolation | None:
    """The first thing ``model`` on ``provider`` cannot do for this request, or None."""
    why = model_unsupported(features, messages, model, caps)
    if why is not None:
        return why
    r = features.reasoning
    if r.budget_tokens is not None and provider == "ollama":
        return FieldViolation("reasoning.budget_tokens", "Ollama cannot cap thinking tokens")
    if features.tool_choice.mode in ("required", "function") and provider == "ollama":
        return FieldViolation(
            "tool_choice.mode", "Ollama cannot force a tool call (it has no tool_choice)"
        )
    for key, _ in features.engine_options:
        if not engine_knows(provider, key):
            return FieldViolation(f'engine_options["{key}"]', f"{provider} has no option {key}")
    return None


def eligible(
    candidates: list[Candidate],
    features: Features,
    messages: tuple[ChatMessage, ...],
    catalog: Catalog,
    request_id: str,
) -> list[Candidate]:
    """The candidates that can serve the request, in order; raises FEATURE_UNSUPPORTED with the
    first candidate's reason when none can."""
    requested = candidates[0]
    why = model_unsupported(
        features, messages, requested.model, catalog.capabilities_of(requested.model)
    )
    if why is not None:
        return _refuse(requested, why, request_id)
    kept: list[Candidate] = []
    first: tuple[Candidate, FieldViolation] | None = None
    for cand in candidates:
        why = unsupported(
            features, messages, cand.provider, cand.model, catalog.capabilities_of(cand.model)
        )
        if why is None:
            kept.append(cand)
        elif first is None:
            first = (cand, why)
    if kept:
        return kept
    assert first is not None, "no candidates"
    cand, why = first
    return _refuse(cand, why, request_id)


def _refuse(cand: Candidate, why: FieldViolation, request_id: str) -> list[Candidate]:
    raise RouterError(
        ErrorKind.FEATURE_UNSUPPORTED,
        f"unsupported feature {why.field}: {why.description}",
        provider=cand.provider,
        model=cand.model,
        request_id=request_id,
        violations=(why,),
    )
