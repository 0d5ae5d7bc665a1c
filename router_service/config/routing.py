"""``RoutingConfig``: the immutable, validated config one request is placed by.

Built from a pushed ``ConfigSnapshot`` (protobuf only, no grpc) or, before any push, from a safe
bootstrap: 100% Ollama, the seed's catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from llmcore.catalog import CAPABILITIES
from llmcore.features import TaskDefaults, parse_task_defaults
from llmcore.shadowing import mirroring
from llmcore.vocabulary import ProviderName, TaskName
from router_service.catalog import Catalog
from router_service.config.evaluation import (
    DEFAULT_JUDGE_CALLS_PER_HOUR,
    DEFAULT_JUDGE_TIMEOUT_S,
    JudgeOptions,
    SemanticOptions,
)
from router_service.lifecycle.timeouts import Overrides

_PROVIDER: dict[int, ProviderName] = {
    common_pb2.PROVIDER_OLLAMA: "ollama",
    common_pb2.PROVIDER_VLLM: "vllm",
}
TASK_NAMES: dict[int, TaskName] = {
    common_pb2.TASK_CLASSIFICATION: "classification",
    common_pb2.TASK_ANALYSIS: "analysis",
    common_pb2.TASK_SYNTHESIS: "synthesis",
    common_pb2.TASK_REFLECTION: "reflection",
    common_pb2.TASK_RETRIEVAL_EVALUATION: "retrieval_evaluation",
    common_pb2.TASK_VERIFICATION: "verification",
    common_pb2.TASK_EMBEDDING: "embedding",
}
# Seed LLMProviderConfig: synthesis/analysis/classification/embedding have their own switch;
# the other call sites follow the primary.
_COMPONENT_TASKS: dict[str, tuple[TaskName, ...]] = {
    "synthesis_provider": ("synthesis",),
    "analysis_provider": ("analysis",),
    "classification_provider": ("classification",),
    "embedding_provider": ("embedding",),
}


class ConfigError(ValueError):
    """A snapshot the router refuses (it NACKs and keeps its previous config)."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    version: int
    primary: ProviderName
    fallback: ProviderName | None
    # Tasks pinned to one engine whatever the phase (seed: embedding_provider = "ollama").
    task_providers: Mapping[TaskName, ProviderName]
    vllm_percent: float
    shadow_enabled: bool
    shadow_provider: ProviderName | None
    shadow_sample_rate: float
    catalog: Catalog
    phase: str = "FACADE"
    shadow_during_split: bool = False
    shadow_compare_embeddings: bool = False
    shadow_capture_content: bool = False
    # model → system prefix (seed: Chain-of-Draft for deepseek-r1); empty unless configured.
    prompt_prefixes: Mapping[str, str] = field(default_factory=dict)
    # Per-task stream timeout overrides (flags.stream_timeouts); empty: the router's settings.
    stream_timeouts: Overrides = field(default_factory=dict)
    # flags.continuation_disabled: no continuation failover on any router.
    continuation_disabled: bool = False
    # How shadow pairs are scored on meaning (flags.shadow_semantic, defaults resolved).
    semantic: SemanticOptions = field(default_factory=SemanticOptions)
    # The optional LLM judge of shadow pairs (flags.shadow_judge, defaults resolved).
    judge: JudgeOptions = field(default_factory=JudgeOptions)
    # Per-task request defaults (reasoning, response format, engine options); a request's own
    # values win.
    task_defaults: Mapping[TaskName, TaskDefaults] = field(default_factory=dict)
    # Engine pools (docs/pools.md): replicas pushed by the control service, and the replica
    # URLs drained on every router.
    replicas: tuple[tuple[ProviderName, str], ...] = ()
    drained_replicas: frozenset[str] = frozenset()
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def shadow_active(self) -> bool:
        """Whether requests are mirrored now: always in SHADOW, in SPLIT when the flags ask
        (``llmcore.shadowing``)."""
        return mirroring(
            self.phase,
            shadow_enabled=self.shadow_enabled,
            shadow_during_split=self.shadow_during_split,
            has_shadow_provider=self.shadow_provider is not None,
        )


def bootstrap_config(
    catalog: Catalog,
    primary: ProviderName = "ollama",
    fallback: ProviderName | None = "vllm",
    task_providers: Mapping[TaskName, ProviderName] | None = None,
) -> RoutingConfig:
    """What a router that has never had config serves (version 0): by default 100% Ollama
    with vLLM as fallback; the router's static settings may say otherwise."""
    return RoutingConfig(
        version=0,
        primary=primary,
        fallback=fallback if fallback != primary else None,
        task_providers=dict(task_providers or {}),
        vllm_percent=0.0,
        shadow_enabled=False,
        shadow_provider=None,
        shadow_sample_rate=0.0,
        catalog=catalog,
    )


def _provider(value: int, field_name: str, optional: bool = False) -> ProviderName | None:
    if value == common_pb2.PROVIDER_UNSPECIFIED and optional:
        return None
    if value not in _PROVIDER:
        raise ConfigError(f"{field_name}: unknown provider {value}")
    return _PROVIDER[value]


def from_snapshot(snap: control_pb2.ConfigSnapshot) -> RoutingConfig:
    """Validate and convert a snapshot; raises ``ConfigError`` with the reason to NACK."""
    if snap.version <= 0:
        raise ConfigError(f"version: must be positive, got {snap.version}")
    flags = snap.flags
    primary = _provider(flags.primary_provider, "flags.primary_provider")
    assert primary is not None
    fallback = _provider(flags.fallback_provider, "flags.fallback_provider", optional=True)
    shadow = _provider(flags.shadow_provider, "flags.shadow_provider", optional=True)
    if not 0.0 <= snap.vllm_traffic_percent <= 100.0:
        raise ConfigError(f"vllm_traffic_percent: {snap.vllm_traffic_percent} not in [0, 100]")
    if not 0.0 <= flags.shadow_sample_rate <= 1.0:
        raise ConfigError(f"flags.shadow_sample_rate: {flags.shadow_sample_rate} not in [0, 1]")
    if flags.shadow_enabled and shadow is None:
        raise ConfigError("flags.shadow_provider: required when shadow is enabled")

    task_providers: dict[TaskName, ProviderName] = {}
    for name, tasks in _COMPONENT_TASKS.items():
        value = getattr(flags, name)
        if value in (
            control_pb2.COMPONENT_PROVIDER_UNSPECIFIED,
            control_pb2.COMPONENT_PROVIDER_PRIMARY,
        ):
            continue
        if value == control_pb2.COMPONENT_PROVIDER_OLLAMA:
            chosen: ProviderName = "ollama"
        elif value == control_pb2.COMPONENT_PROVIDER_VLLM:
            chosen = "vllm"
        else:
            raise ConfigError(f"flags.{name}: unknown value {value}")
        for t in tasks:
            task_providers[t] = chosen

    catalog = _catalog(snap.catalog)
    prefixes: dict[str, str] = {}
    for i, pol in enumerate(flags.prompt_policies):
        if pol.model not in catalog.engine_names:
            raise ConfigError(f"flags.prompt_policies[{i}].model: unknown model {pol.model!r}")
        if pol.system_prefix:
            prefixes[pol.model] = pol.system_prefix
    timeouts = _stream_timeouts(flags)
    task_defaults = _task_defaults(flags)
    phase = control_pb2.Phase.Name(snap.migration.phase).removeprefix("PHASE_")
    sem = flags.shadow_semantic
    if not 0.0 <= sem.sample_rate <= 1.0:
        raise ConfigError(f"flags.shadow_semantic.sample_rate: {sem.sample_rate} not in [0, 1]")
    if sem.model and sem.model not in catalog.engine_names:
        raise ConfigError(f"flags.shadow_semantic.model: unknown model {sem.model!r}")
    if min(sem.max_concurrency, sem.queue_size, sem.timeout_ms) < 0:
        raise ConfigError("flags.shadow_semantic: bounds must not be negative")
    semantic = SemanticOptions.resolve(
        sem.sample_rate,
        sem.model,
        _provider(sem.provider, "flags.shadow_semantic.provider", optional=True),
        sem.max_concurrency,
        sem.queue_size,
        sem.timeout_ms,
    )
    judge = _judge(flags.shadow_judge, catalog)
    return RoutingConfig(
        version=snap.version,
        primary=primary,
        fallback=fallback if fallback != primary else None,
        task_providers=task_providers,
        vllm_percent=snap.vllm_traffic_percent,
        shadow_enabled=flags.shadow_enabled,
        shadow_provider=shadow,
        shadow_sample_rate=flags.shadow_sample_rate,
        catalog=catalog,
        phase=phase,
        shadow_during_split=flags.shadow_during_split,
        shadow_compare_embeddings=flags.shadow_compare_embeddings,
        shadow_capture_content=flags.shadow_capture_content,
        prompt_prefixes=prefixes,
        stream_timeouts=timeouts,
        continuation_disabled=flags.continuation_disabled,
        semantic=semantic,
        judge=judge,
        task_defaults=task_defaults,
        replicas=_replicas(flags),
        drained_replicas=frozenset(u.rstrip("/") for u in flags.drained_replicas),
        raw=snap.SerializeToString(deterministic=True),
    )


def _replicas(flags: control_pb2.Flags) -> tuple[tuple[ProviderName, str], ...]:
    out: list[tuple[ProviderName, str]] = []
    for i, r in enumerate(flags.replicas):
        provider = _provider(r.provider, f"flags.replicas[{i}].provider", optional=False)
        if not r.url.startswith(("http://", "https://")):
            raise ConfigError(f"flags.replicas[{i}].url: not an http(s) URL")
        assert provider is not None
        out.append((provider, r.url.rstrip("/")))
    return tuple(out)


def _stream_timeouts(flags: control_pb2.Flags) -> Overrides:
    out: dict[tuple[TaskName, ProviderName | None], tuple[float | None, float | None]] = {}
    for i, st in enumerate(flags.stream_timeouts):
        where = f"flags.stream_timeouts[{i}]"
        task = TASK_NAMES.get(st.task)
        if task is None or task == "embedding":
            raise ConfigError(f"{where}.task: not a streaming task ({st.task})")
        provider = _provider(st.provider, f"{where}.provider", optional=True)
        if st.first_token_timeout_ms < 0 or st.idle_timeout_ms < 0:
            raise ConfigError(f"{where}: timeouts must not be negative")
        if (task, provider) in out:
            raise ConfigError(f"{where}: a second entry for {task} on {provider or 'both'}")
        out[(task, provider)] = (
            st.first_token_timeout_ms / 1000 or None,
            st.idle_timeout_ms / 1000 or None,
        )
    return out


def _judge(j: control_pb2.ShadowJudge, catalog: Catalog) -> JudgeOptions:
    if not j.enabled:
        return JudgeOptions()
    provider = _provider(j.provider, "flags.shadow_judge.provider")
    assert provider is not None
    if catalog.engine_name(j.model, provider) is None:
        raise ConfigError(f"flags.shadow_judge.model: {provider} does not serve {j.model!r}")
    for name, rate in (("sample_rate", j.sample_rate), ("swap_check_rate", j.swap_check_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"flags.shadow_judge.{name}: {rate} not in [0, 1]")
    if j.max_calls_per_hour < 0 or j.timeout_ms < 0:
        raise ConfigError("flags.shadow_judge: bounds must not be negative")
    return JudgeOptions(
        enabled=True,
        model=j.model,
        provider=provider,
        sample_rate=j.sample_rate or 1.0,
        max_calls_per_hour=j.max_calls_per_hour or DEFAULT_JUDGE_CALLS_PER_HOUR,
        timeout_s=j.timeout_ms / 1000 if j.timeout_ms else DEFAULT_JUDGE_TIMEOUT_S,
        prompt=j.prompt,
        swap_check_rate=j.swap_check_rate,
    )


def _task_defaults(flags: control_pb2.Flags) -> dict[TaskName, TaskDefaults]:
    out: dict[TaskName, TaskDefaults] = {}
    for i, td in enumerate(flags.task_defaults):
        path = f"flags.task_defaults[{i}]"
        task = TASK_NAMES.get(td.task)
        if task is None or task == "embedding":
            raise ConfigError(f"{path}.task: not a generate task ({td.task})")
        if task in out:
            raise ConfigError(f"{path}.task: {task} has defaults already")
        problems: list[tuple[str, str]] = []
        out[task] = parse_task_defaults(td, path, problems)
        if problems:
            raise ConfigError("; ".join(f"{f}: {d}" for f, d in problems))
    return out


def _catalog(cat: control_pb2.Catalog) -> Catalog:
    if not cat.models:
        raise ConfigError("catalog.models: empty")
    names: dict[str, dict[ProviderName, str]] = {}
    fallbacks: dict[str, list[str]] = {}
    caps: dict[str, frozenset[str]] = {}
    for i, m in enumerate(cat.models):
        if not m.name:
            raise ConfigError(f"catalog.models[{i}].name: empty")
        if m.name in names:
            raise ConfigError(f"catalog.models[{i}].name: duplicate {m.name!r}")
        engines: dict[ProviderName, str] = {}
        if m.ollama_name:
            engines["ollama"] = m.ollama_name
        if m.vllm_name:
            engines["vllm"] = m.vllm_name
        if not engines:
            raise ConfigError(f"catalog.models[{i}]: {m.name!r} has no engine name")
        names[m.name] = engines
        for c in m.capabilities:
            if c not in CAPABILITIES:
                raise ConfigError(f"catalog.models[{i}].capabilities: unknown {c!r}")
        if m.capabilities:
            caps[m.name] = frozenset(m.capabilities)
        if m.fallbacks:
            fallbacks[m.name] = list(m.fallbacks)
    for model, chain in fallbacks.items():
        for f in chain:
            if f not in names:
                raise ConfigError(f"catalog: fallback {f!r} of {model!r} is not in the catalogue")
    task_models: dict[TaskName, str] = {}
    for i, tm in enumerate(cat.task_models):
        task = TASK_NAMES.get(tm.task)
        if task is None:
            raise ConfigError(f"catalog.task_models[{i}].task: unknown task {tm.task}")
        if tm.model not in names:
            raise ConfigError(f"catalog.task_models[{i}].model: unknown model {tm.model!r}")
        task_models[task] = tm.model
    missing = sorted(set(TASK_NAMES.values()) - set(task_models))
    if missing:
        raise ConfigError(f"catalog.task_models: no model for {', '.join(missing)}")
    return Catalog(
        engine_names=names, task_models=task_models, fallbacks=fallbacks, capabilities=caps
    )
