"""Whole-config validation: every change is checked as the complete state it would produce.

Returns one :class:`FieldViolation` per problem, named by its proto path inside
``ConfigSnapshot`` (``flags.rollback.error_rate``, ``catalog.models[2].fallbacks[0]``), so an
operator sees every mistake of a change at once. Referential integrity follows go-control-plane's
``Consistent()``: every model a task, a fallback or a pinned component names must exist and be
served by the engine that would be asked.
"""

from __future__ import annotations

import itertools
import math

from control_service import task_defaults
from control_service.errors import FieldViolation, InvalidChange
from control_service.evaluation_flags import validate_judge, validate_semantic
from control_service.state import (
    COMPONENT_TASKS,
    ROLLBACK_RULES,
    TASKS,
    Catalog,
    DesiredState,
    Flags,
    Migration,
    Phase,
    RolloutStatus,
)

# Inclusive ranges of the numeric flags (rollback thresholds and the shadow sample rate).
LATENCY_P95_MS = (1, 600_000)
CONSECUTIVE_TIMEOUTS = (1, 1_000)
WINDOW_SECONDS = (10, 86_400)
MIN_REQUESTS = (1, 1_000_000)
COOLDOWN_SECONDS = (0, 7 * 86_400)
# 0: automation only records what it would do (every wanted rollback hits the cap).
MAX_AUTOMATIC_ROLLBACKS = (0, 1_000)
TIMEOUT_ROUTERS_REQUIRED = (1, 1_000)
HEALTH_THRESHOLD = (1, 100)


def _in_range(out: list[FieldViolation], path: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        out.append(FieldViolation(path, f"must be a finite number in [{lo:g}, {hi:g}]"))
    elif not lo <= value <= hi:
        out.append(FieldViolation(path, f"must be in [{lo:g}, {hi:g}] (got {value:g})"))


MAX_PROMPT_PREFIX_CHARS = 4000


# Stream timeouts (ms) a pushed override may set; 0 keeps the router's own setting.
STREAM_TIMEOUT_MS = (100, 600_000)


def _replica_url(url: str) -> str:
    """Why ``url`` is not a replica base URL, or ""."""
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        return "must be an http:// or https:// base URL"
    if url.endswith("/") or any(c.isspace() for c in url):
        return "must have no trailing slash and no whitespace"
    return ""


def _pool_replicas(out: list[FieldViolation], flags: Flags) -> None:
    """Engine-pool replicas (docs/pools.md): well-formed, each listed once."""
    seen: set[str] = set()
    for i, r in enumerate(flags.replicas):
        why = _replica_url(r.url)
        if why:
            out.append(FieldViolation(f"flags.replicas[{i}].url", why))
        elif r.url in seen:
            out.append(FieldViolation(f"flags.replicas[{i}].url", f"{r.url} is listed twice"))
        seen.add(r.url)
    drained: set[str] = set()
    for i, url in enumerate(flags.drained_replicas):
        why = _replica_url(url) or (f"{url} is listed twice" if url in drained else "")
        if why:
            out.append(FieldViolation(f"flags.drained_replicas[{i}]", why))
        drained.add(url)


def _stream_timeouts(out: list[FieldViolation], flags: Flags) -> None:
    seen: set[tuple[str, str | None]] = set()
    for i, o in enumerate(flags.stream_timeouts):
        path = f"flags.stream_timeouts[{i}]"
        if (o.task, o.provider) in seen:
            out.append(
                FieldViolation(path, f"a second entry for {o.task} on {o.provider or 'both'}")
            )
        seen.add((o.task, o.provider))
        if o.first_token_timeout_ms == 0 and o.idle_timeout_ms == 0:
            out.append(FieldViolation(path, "sets neither timeout"))
        for name in ("first_token_timeout_ms", "idle_timeout_ms"):
            value = getattr(o, name)
            if value != 0:
                _in_range(out, f"{path}.{name}", value, *STREAM_TIMEOUT_MS)


def validate_flags(flags: Flags, catalog: Catalog) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    primary = flags.primary_provider
    if primary is None:
        out.append(FieldViolation("flags.primary_provider", "must be ollama or vllm"))
    if flags.fallback_provider is not None and flags.fallback_provider == primary:
        out.append(
            FieldViolation(
                "flags.fallback_provider",
                f"must differ from primary_provider ({primary}); unspecified means no fallback",
            )
        )
    if flags.shadow_enabled:
        if flags.shadow_provider is None:
            out.append(FieldViolation("flags.shadow_provider", "shadow_enabled requires one"))
        elif flags.shadow_provider == primary:
            out.append(
                FieldViolation(
                    "flags.shadow_provider",
                    f"must differ from primary_provider ({primary}) when shadow_enabled",
                )
            )
        if flags.shadow_sample_rate == 0:
            out.append(
                FieldViolation("flags.shadow_sample_rate", "must be above 0 when shadow_enabled")
            )
    _in_range(out, "flags.shadow_sample_rate", flags.shadow_sample_rate, 0.0, 1.0)
    out += validate_semantic(flags.shadow_semantic, catalog)
    out += validate_judge(flags.shadow_judge, catalog)
    seen: set[str] = set()
    for i, (model, prefix) in enumerate(flags.prompt_policies):
        path = f"flags.prompt_policies[{i}]"
        if catalog.model(model) is None:
            out.append(FieldViolation(f"{path}.model", f"unknown model {model!r}"))
        elif model in seen:
            out.append(FieldViolation(f"{path}.model", f"{model!r} has a policy already"))
        seen.add(model)
        if not prefix.strip():
            out.append(FieldViolation(f"{path}.system_prefix", "must not be empty"))
        elif len(prefix) > MAX_PROMPT_PREFIX_CHARS:
            out.append(
                FieldViolation(
                    f"{path}.system_prefix", f"at most {MAX_PROMPT_PREFIX_CHARS} characters"
                )
            )
    _stream_timeouts(out, flags)
    out.extend(task_defaults.validate(flags.task_defaults))
    _pool_replicas(out, flags)
    r = flags.rollback
    _in_range(out, "flags.rollback.error_rate", r.error_rate, 0.0, 1.0)
    _in_range(out, "flags.rollback.latency_p95_ms", r.latency_p95_ms, *LATENCY_P95_MS)
    _in_range(
        out, "flags.rollback.consecutive_timeouts", r.consecutive_timeouts, *CONSECUTIVE_TIMEOUTS
    )
    _in_range(out, "flags.rollback.window_seconds", r.window_seconds, *WINDOW_SECONDS)
    _in_range(out, "flags.rollback.min_requests", r.min_requests, *MIN_REQUESTS)
    _in_range(out, "flags.rollback.cooldown_seconds", r.cooldown_seconds, *COOLDOWN_SECONDS)
    _in_range(
        out,
        "flags.rollback.max_automatic_rollbacks",
        r.max_automatic_rollbacks,
        *MAX_AUTOMATIC_ROLLBACKS,
    )
    _in_range(
        out,
        "flags.rollback.timeout_routers_required",
        r.timeout_routers_required,
        *TIMEOUT_ROUTERS_REQUIRED,
    )
    _in_range(
        out,
        "flags.rollback.health_failure_threshold",
        r.health_failure_threshold,
        *HEALTH_THRESHOLD,
    )
    _in_range(
        out,
        "flags.rollback.health_success_threshold",
        r.health_success_threshold,
        *HEALTH_THRESHOLD,
    )
    _in_range(out, "flags.rollback.embed_latency_p95_ms", r.embed_latency_p95_ms, *LATENCY_P95_MS)
    for i, rule in enumerate(r.dry_run_rules):
        if rule not in ROLLBACK_RULES:
            out.append(
                FieldViolation(
                    f"flags.rollback.dry_run_rules[{i}]",
                    f"unknown rule {rule!r} (known: {', '.join(ROLLBACK_RULES)})",
                )
            )
        elif rule in r.dry_run_rules[:i]:
            out.append(FieldViolation(f"flags.rollback.dry_run_rules[{i}]", f"duplicate {rule!r}"))
    # A component pinned to one engine needs that engine to serve the task's model.
    for flag, task in COMPONENT_TASKS.items():
        pinned = getattr(flags, flag)
        if pinned == "primary":
            continue
        model_name = catalog.model_for(task)
        entry = catalog.model(model_name) if model_name else None
        if entry is not None and not entry.engine_name(pinned):
            out.append(
                FieldViolation(
                    f"flags.{flag}",
                    f"{pinned} does not serve {entry.name}, the model of task {task}",
                )
            )
    return out


def validate_migration(m: Migration) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    steps = m.split_steps
    if not steps:
        out.append(FieldViolation("migration.split_steps", "must name at least one weight"))
    elif any(not 1 <= s <= 99 for s in steps) or any(a >= b for a, b in itertools.pairwise(steps)):
        out.append(
            FieldViolation("migration.split_steps", "must be strictly increasing, each in [1, 99]")
        )
    expected = {Phase.FACADE: (0, 0), Phase.SHADOW: (0, 0), Phase.PRIMARY: (100, 100)}
    lo, hi = expected.get(m.phase, (1, 99))
    if not lo <= m.split_weight_percent <= hi:
        out.append(
            FieldViolation(
                "migration.split_weight_percent",
                f"must be in [{lo}, {hi}] in PHASE_{m.phase.name} (got {m.split_weight_percent})",
            )
        )
    aborted = m.status is RolloutStatus.ABORTED
    if aborted and m.aborted_phase is None:
        out.append(FieldViolation("migration.aborted_phase", "an aborted migration needs one"))
    if not aborted and (m.aborted_phase is not None or m.aborted_weight_percent):
        out.append(FieldViolation("migration.aborted_phase", "set only while aborted"))
    if aborted and m.phase is not Phase.FACADE:
        out.append(FieldViolation("migration.phase", "must be PHASE_FACADE while aborted"))
    if m.automatic_rollbacks < 0:
        out.append(FieldViolation("migration.automatic_rollbacks", "must not be negative"))
    return out


def _fallback_cycle(catalog: Catalog, start: str) -> list[str] | None:
    """The first fallback cycle reachable from ``start`` (as a path), or None."""
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> list[str] | None:
        if name in on_path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        entry = catalog.model(name)
        if entry is None:
            return None
        path.append(name)
        on_path.add(name)
        for nxt in entry.fallbacks:
            found = visit(nxt)
            if found:
                return found
        path.pop()
        on_path.discard(name)
        done.add(name)
        return None

    return visit(start)


def validate_catalog(catalog: Catalog) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not catalog.models:
        out.append(FieldViolation("catalog.models", "must list at least one model"))
    seen: set[str] = set()
    for i, e in enumerate(catalog.models):
        path = f"catalog.models[{i}]"
        if not e.name:
            out.append(FieldViolation(f"{path}.name", "must not be empty"))
        elif e.name in seen:
            out.append(FieldViolation(f"{path}.name", f"duplicate model {e.name!r}"))
        seen.add(e.name)
        if not e.ollama_name and not e.vllm_name:
            out.append(FieldViolation(path, "served by no engine: set ollama_name or vllm_name"))
        for size_field in ("ollama_vram_bytes", "vllm_vram_bytes"):
            if getattr(e, size_field) < 0:
                out.append(FieldViolation(f"{path}.{size_field}", "must not be negative"))
        for j, fb in enumerate(e.fallbacks):
            target = catalog.model(fb)
            if target is None:
                out.append(FieldViolation(f"{path}.fallbacks[{j}]", f"unknown model {fb!r}"))
            elif target.embedding != e.embedding:
                out.append(
                    FieldViolation(
                        f"{path}.fallbacks[{j}]",
                        f"{fb!r} is {'an' if target.embedding else 'not an'} embedding model",
                    )
                )
        cycle = _fallback_cycle(catalog, e.name) if e.name else None
        if cycle and cycle[0] == e.name:
            out.append(FieldViolation(f"{path}.fallbacks", "cycle " + " -> ".join(cycle)))
    tasks_seen: set[str] = set()
    for k, (task, model) in enumerate(catalog.task_models):
        path = f"catalog.task_models[{k}]"
        if task in tasks_seen:
            out.append(FieldViolation(f"{path}.task", f"duplicate task {task}"))
        tasks_seen.add(task)
        entry = catalog.model(model)
        if entry is None:
            out.append(FieldViolation(f"{path}.model", f"unknown model {model!r}"))
        elif entry.embedding != (task == "embedding"):
            want = "an embedding" if task == "embedding" else "a generation"
            out.append(FieldViolation(f"{path}.model", f"task {task} needs {want} model"))
    missing = [t for t in TASKS if t not in tasks_seen]
    if missing:
        out.append(FieldViolation("catalog.task_models", f"missing tasks {', '.join(missing)}"))
    return out


def violations(state: DesiredState) -> list[FieldViolation]:
    """Every problem of the whole state (empty when it may be published)."""
    return [
        *validate_flags(state.flags, state.catalog),
        *validate_migration(state.migration),
        *validate_catalog(state.catalog),
    ]


def check(state: DesiredState) -> DesiredState:
    """``state`` itself, or :class:`InvalidChange` listing every violation."""
    found = violations(state)
    if found:
        raise InvalidChange(found)
    return state
