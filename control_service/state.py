"""The desired state as plain, immutable data: flags, the migration phase, the model catalogue.

No grpc or protobuf here: ``convert`` translates to and from the wire, ``store`` persists the
JSON form (:func:`to_dict` / :func:`from_dict`, pydantic over these dataclasses). The defaults
are the seed report's ``LLMProviderConfig`` (section 5.2), its rollback triggers (6.4), its split
steps (5.4) and the router's model catalogue (``llmcore.catalog``), so a fresh control service
pushes what a router without a control service already does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, PlainSerializer, TypeAdapter, ValidationError

from control_service.evaluation_flags import ShadowJudge, ShadowSemantic
from control_service.model_sizes import default_vram_bytes
from control_service.task_defaults import TaskDefaultsEntry
from llmcore.catalog import DEFAULT_ENGINE_NAMES, DEFAULT_FALLBACKS, DEFAULT_TASK_MODELS
from llmcore.vocabulary import ProviderName, TaskName

TASKS: tuple[TaskName, ...] = get_args(TaskName)
ComponentProvider = Literal["primary", "ollama", "vllm"]
COMPONENT_PROVIDERS: tuple[ComponentProvider, ...] = get_args(ComponentProvider)
# The seed's per-component flags and the task each one routes.
COMPONENT_TASKS: dict[str, TaskName] = {
    "synthesis_provider": "synthesis",
    "analysis_provider": "analysis",
    "classification_provider": "classification",
    "embedding_provider": "embedding",
}
SEED_SPLIT_STEPS: tuple[int, ...] = (10, 30, 70)
# The automatic rollback rules, by the names ``RollbackThresholds.dry_run_rules`` uses.
RollbackRule = Literal["error_rate", "latency_p95", "consecutive_timeouts", "health"]
ROLLBACK_RULES: tuple[RollbackRule, ...] = get_args(RollbackRule)


class Phase(enum.IntEnum):
    """Strangler Fig steps, ordered: a larger value is further along."""

    FACADE = 1
    SHADOW = 2
    SPLIT = 3
    PRIMARY = 4


# A phase as the store writes it: by name, so the document reads "SHADOW", not 2.
StoredPhase = Annotated[
    Phase,
    BeforeValidator(lambda v: Phase.__members__.get(v, v) if isinstance(v, str) else v),
    PlainSerializer(lambda p: p.name, return_type=str),
]


class RolloutStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ABORTED = "ABORTED"


@dataclass(frozen=True, slots=True)
class RollbackThresholds:
    """Seed 6.4: error rate > 5 % over 5 min, p95 > 5 s, 3+ consecutive timeouts, vLLM health
    check failing; the other knobs follow control-plane.md 3.5."""

    error_rate: float = 0.05
    latency_p95_ms: int = 5000
    consecutive_timeouts: int = 3
    window_seconds: int = 300
    # "No data means hold": a window with fewer requests is never judged (control-plane.md 3.4).
    min_requests: int = 50
    # No second automatic rollback within this long of the last one.
    cooldown_seconds: int = 300
    # GitLab #249131's default: after this many automatic rollbacks only an operator acts.
    max_automatic_rollbacks: int = 3
    # A single router can fail over locally; a fleet rollback needs this many to agree (3.5).
    timeout_routers_required: int = 2
    # k8s-probe style hysteresis of the control service's own vLLM/Ollama probes ("fail 3,
    # succeed 2").
    health_failure_threshold: int = 3
    health_success_threshold: int = 2
    # Rules that are evaluated and recorded ("would roll back") but never act (Argo dryRun).
    dry_run_rules: tuple[RollbackRule, ...] = ()
    # Embed has no first token: its p95 is judged on the whole call.
    embed_latency_p95_ms: int = 5000


@dataclass(frozen=True, slots=True)
class StreamTimeoutOverride:
    """Per-task stream timeouts pushed to routers (``provider`` None: both engines; a 0 keeps
    the router's own setting). See docs/failures.md."""

    task: TaskName
    provider: ProviderName | None = None
    first_token_timeout_ms: int = 0
    idle_timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class EngineReplica:
    """One engine-pool replica pushed to every router (docs/pools.md)."""

    provider: ProviderName
    url: str


@dataclass(frozen=True, slots=True)
class Flags:
    """Seed 5.2 ``LLMProviderConfig`` without the vLLM share (owned by :class:`Migration`).

    ``None`` for a provider is the proto's PROVIDER_UNSPECIFIED ("none" for the fallback).
    The seed's fallback default ("ollama" with an Ollama primary) names no *other* engine, so the
    default here is the router's static one: vLLM.
    """

    primary_provider: ProviderName | None = "ollama"
    fallback_provider: ProviderName | None = "vllm"
    synthesis_provider: ComponentProvider = "primary"
    analysis_provider: ComponentProvider = "primary"
    classification_provider: ComponentProvider = "primary"
    embedding_provider: ComponentProvider = "ollama"
    shadow_enabled: bool = False
    shadow_provider: ProviderName | None = "vllm"
    shadow_sample_rate: float = 0.05
    rollback: RollbackThresholds = field(default_factory=RollbackThresholds)
    shadow_during_split: bool = False
    shadow_compare_embeddings: bool = False
    # Operator opt-in: routers report prompt and answer texts of compared pairs.
    shadow_capture_content: bool = False
    # (model, system prefix) pairs, e.g. the seed's Chain-of-Draft prefix for deepseek-r1.
    prompt_policies: tuple[tuple[str, str], ...] = ()
    stream_timeouts: tuple[StreamTimeoutOverride, ...] = ()
    # Fleet-wide off switch of continuation failover (on by default where routers allow it).
    continuation_disabled: bool = False
    # How shadow pairs are scored on meaning (control_service.evaluation_flags).
    shadow_semantic: ShadowSemantic = field(default_factory=ShadowSemantic)
    # The optional LLM judge of shadow pairs (control_service.evaluation_flags).
    shadow_judge: ShadowJudge = field(default_factory=ShadowJudge)
    # Per-task request defaults (reasoning, response format, engine options such as num_ctx).
    task_defaults: tuple[TaskDefaultsEntry, ...] = ()
    # Engine pools (docs/pools.md): replicas every router adds, and replicas no router sends
    # new requests to (DrainReplica).
    replicas: tuple[EngineReplica, ...] = ()
    drained_replicas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    ollama_name: str = ""
    vllm_name: str = ""
    fallbacks: tuple[str, ...] = ()
    embedding: bool = False
    # GPU memory the model needs on each engine, weights only (0: unknown); see model_sizes.
    ollama_vram_bytes: int = 0
    vllm_vram_bytes: int = 0

    def engine_name(self, provider: ProviderName) -> str:
        return self.ollama_name if provider == "ollama" else self.vllm_name


@dataclass(frozen=True, slots=True)
class Catalog:
    models: tuple[ModelEntry, ...]
    task_models: tuple[tuple[TaskName, str], ...]

    def model(self, name: str) -> ModelEntry | None:
        for m in self.models:
            if m.name == name:
                return m
        return None

    def model_for(self, task: TaskName) -> str | None:
        for t, m in self.task_models:
            if t == task:
                return m
        return None


@dataclass(frozen=True, slots=True)
class Migration:
    """The phase resource. While ABORTED the phase is FACADE and ``aborted_*`` hold what Retry
    restores; ``split_weight_percent`` is 0 before SPLIT and 100 in PRIMARY."""

    phase: StoredPhase = Phase.FACADE
    split_weight_percent: int = 0
    split_steps: tuple[int, ...] = SEED_SPLIT_STEPS
    status: RolloutStatus = RolloutStatus.ACTIVE
    status_reason: str = ""
    aborted_phase: StoredPhase | None = None
    aborted_weight_percent: int = 0
    # Automatic rollbacks so far (for the cap) and when the last one happened (for the
    # cooldown); carried through every verb, never reset by one (see control_service.rollback).
    automatic_rollbacks: int = 0
    last_rollback_at: float | None = None

    @property
    def vllm_traffic_percent(self) -> float:
        """The share routers send to vLLM: 0 in FACADE, SHADOW and while aborted."""
        if self.status is RolloutStatus.ABORTED:
            return 0.0
        if self.phase is Phase.SPLIT:
            return float(self.split_weight_percent)
        return 100.0 if self.phase is Phase.PRIMARY else 0.0


@dataclass(frozen=True, slots=True)
class DesiredState:
    flags: Flags = field(default_factory=Flags)
    migration: Migration = field(default_factory=Migration)
    catalog: Catalog = field(default_factory=lambda: default_catalog())


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One accepted version of the desired state."""

    version: int
    state: DesiredState
    created_at: float


@dataclass(frozen=True, slots=True)
class ChangeMeta:
    actor: str = ""
    reason: str = ""
    expected_version: int = 0
    # The client's own name for itself when the actor is a credential's identity (audited as
    # evidence.actor_note, never trusted).
    actor_note: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    version: int
    time: float
    actor: str
    action: str
    reason: str
    before_json: str
    after_json: str


def default_catalog() -> Catalog:
    """The router's seed catalogue (``router_service.catalog``) in catalogue form."""
    embedding_models = {DEFAULT_TASK_MODELS["embedding"]}
    models = tuple(
        ModelEntry(
            name=name,
            ollama_name=names.get("ollama", ""),
            vllm_name=names.get("vllm", ""),
            fallbacks=tuple(DEFAULT_FALLBACKS.get(name, ())),
            embedding=name in embedding_models,
            ollama_vram_bytes=default_vram_bytes(name, "ollama"),
            vllm_vram_bytes=default_vram_bytes(name, "vllm"),
        )
        for name, names in DEFAULT_ENGINE_NAMES.items()
    )
    return Catalog(models, tuple((t, DEFAULT_TASK_MODELS[t]) for t in TASKS))


def default_state(split_steps: tuple[int, ...] = SEED_SPLIT_STEPS) -> DesiredState:
    return DesiredState(migration=Migration(split_steps=tuple(split_steps)))


# --- JSON form (the store's format; also the audit log's before/after) ----------------------
#
# pydantic over the dataclasses above: the document is their fields by name, tuples as lists,
# enums by value except phases, which are stored by name ("SHADOW"). A key added after the first
# release takes the field's default when absent, so snapshots stored by an older build still
# load (tests/control/fixtures holds documents written by the hand-written codec this replaced).

_STATE: TypeAdapter[DesiredState] = TypeAdapter(DesiredState)


def _with_default_sizes(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Snapshots stored before sizes existed: each model gets the seed's size *for its name*,
    which a field default cannot express."""
    models = data.get("catalog", {}).get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, list):
        return data
    sized = [
        {
            **e,
            "ollama_vram_bytes": e.get(
                "ollama_vram_bytes", default_vram_bytes(e["name"], "ollama")
            ),
            "vllm_vram_bytes": e.get("vllm_vram_bytes", default_vram_bytes(e["name"], "vllm")),
        }
        if isinstance(e, Mapping) and isinstance(e.get("name"), str)
        else e
        for e in models
    ]
    return {**data, "catalog": {**data["catalog"], "models": sized}}


def to_dict(state: DesiredState) -> dict[str, Any]:
    return _STATE.dump_python(state, mode="json")  # type: ignore[no-any-return]


def from_dict(data: Mapping[str, Any]) -> DesiredState:
    """Inverse of :func:`to_dict`; a ``ValueError`` naming every bad field (one line, for the
    store's "version N is unreadable" error) on a malformed document."""
    try:
        return _STATE.validate_python(_with_default_sizes(data))
    except ValidationError as exc:
        problems = (
            f"{'.'.join(map(str, e['loc'])) or '$'}: {e['msg']} (got {e['input']!r})"
            for e in exc.errors(include_url=False)
        )
        raise ValueError("; ".join(problems)) from None


def dumps(state: DesiredState) -> str:
    return json.dumps(to_dict(state), sort_keys=True, separators=(",", ":"))


def loads(text: str) -> DesiredState:
    return from_dict(json.loads(text))


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = value


def changed_parts(before: DesiredState, after: DesiredState) -> tuple[str, str]:
    """The audit log's ``before_json`` / ``after_json``: only the leaves that changed, keyed by
    their dotted path (``{"migration.phase": "SHADOW"}``)."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten("", to_dict(before), a)
    _flatten("", to_dict(after), b)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return (
        json.dumps({k: a.get(k) for k in keys}, sort_keys=True),
        json.dumps({k: b.get(k) for k in keys}, sort_keys=True),
    )


def with_migration(state: DesiredState, migration: Migration) -> DesiredState:
    return replace(state, migration=migration)


def with_flags(state: DesiredState, flags: Flags) -> DesiredState:
    return replace(state, flags=flags)
