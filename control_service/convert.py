"""Protobuf <-> domain translation. Imports the generated ``_pb2`` modules, never grpc.

Values a proto3 enum can carry but the domain does not know (a newer client, a typo'd number)
become :class:`InvalidChange` naming the field, like any other bad value.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2, timestamp_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from control_service import stats_windows as sw
from control_service import task_defaults
from control_service.errors import FieldViolation, InvalidChange
from control_service.evaluation_flags import ShadowJudge, ShadowSemantic
from control_service.hub import RouterRecord, RouterView
from control_service.parity_service import Measurement
from control_service.rollback import gate
from control_service.state import (
    ROLLBACK_RULES,
    AuditEvent,
    Catalog,
    ComponentProvider,
    EngineReplica,
    Flags,
    Migration,
    Phase,
    RollbackRule,
    RollbackThresholds,
    RolloutStatus,
    Snapshot,
    StreamTimeoutOverride,
)
from llmcore.catalog import DEFAULT_CAPABILITIES
from llmcore.shadowing import mirroring
from llmcore.vocabulary import ProviderName, TaskName

PROVIDER_TO_PROTO: dict[ProviderName | None, common_pb2.Provider.ValueType] = {
    None: common_pb2.PROVIDER_UNSPECIFIED,
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}
PROVIDER_FROM_PROTO: dict[int, ProviderName | None] = {v: k for k, v in PROVIDER_TO_PROTO.items()}

COMPONENT_TO_PROTO: dict[ComponentProvider, control_pb2.ComponentProvider.ValueType] = {
    "primary": control_pb2.COMPONENT_PROVIDER_PRIMARY,
    "ollama": control_pb2.COMPONENT_PROVIDER_OLLAMA,
    "vllm": control_pb2.COMPONENT_PROVIDER_VLLM,
}
COMPONENT_FROM_PROTO: dict[int, ComponentProvider] = {
    control_pb2.COMPONENT_PROVIDER_UNSPECIFIED: "primary",
    **{v: k for k, v in COMPONENT_TO_PROTO.items()},
}

PHASE_TO_PROTO: dict[Phase, control_pb2.Phase.ValueType] = {
    Phase.FACADE: control_pb2.PHASE_FACADE,
    Phase.SHADOW: control_pb2.PHASE_SHADOW,
    Phase.SPLIT: control_pb2.PHASE_SPLIT,
    Phase.PRIMARY: control_pb2.PHASE_PRIMARY,
}
PHASE_FROM_PROTO: dict[int, Phase] = {v: k for k, v in PHASE_TO_PROTO.items()}

STATUS_TO_PROTO: dict[RolloutStatus, control_pb2.RolloutStatus.ValueType] = {
    RolloutStatus.ACTIVE: control_pb2.ROLLOUT_STATUS_ACTIVE,
    RolloutStatus.PAUSED: control_pb2.ROLLOUT_STATUS_PAUSED,
    RolloutStatus.ABORTED: control_pb2.ROLLOUT_STATUS_ABORTED,
}

TASK_TO_PROTO: dict[TaskName, common_pb2.Task.ValueType] = {
    "classification": common_pb2.TASK_CLASSIFICATION,
    "analysis": common_pb2.TASK_ANALYSIS,
    "synthesis": common_pb2.TASK_SYNTHESIS,
    "reflection": common_pb2.TASK_REFLECTION,
    "retrieval_evaluation": common_pb2.TASK_RETRIEVAL_EVALUATION,
    "verification": common_pb2.TASK_VERIFICATION,
    "embedding": common_pb2.TASK_EMBEDDING,
}
# TASK_UNSPECIFIED is treated as TASK_ANALYSIS (common.proto).
TASK_FROM_PROTO: dict[int, TaskName] = {
    common_pb2.TASK_UNSPECIFIED: "analysis",
    **{v: k for k, v in TASK_TO_PROTO.items()},
}

# Tasks a stream timeout may name: TASK_UNSPECIFIED is refused (the field is required).
_STREAM_TASKS: dict[int, TaskName] = {v: k for k, v in TASK_TO_PROTO.items() if k != "embedding"}

ROUTER_VIEW_TO_PROTO: dict[RouterView, control_pb2.RouterState.ValueType] = {
    RouterView.SYNCED: control_pb2.ROUTER_STATE_SYNCED,
    RouterView.BEHIND: control_pb2.ROUTER_STATE_STALE,
    RouterView.REFUSED: control_pb2.ROUTER_STATE_ERROR,
    RouterView.DISCONNECTED: control_pb2.ROUTER_STATE_DISCONNECTED,
}


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    return float(ts.ToNanoseconds()) / 1e9


# --- state -> proto --------------------------------------------------------------------------


def flags_to_proto(f: Flags) -> control_pb2.Flags:
    r = f.rollback
    return control_pb2.Flags(
        primary_provider=PROVIDER_TO_PROTO[f.primary_provider],
        fallback_provider=PROVIDER_TO_PROTO[f.fallback_provider],
        synthesis_provider=COMPONENT_TO_PROTO[f.synthesis_provider],
        analysis_provider=COMPONENT_TO_PROTO[f.analysis_provider],
        classification_provider=COMPONENT_TO_PROTO[f.classification_provider],
        embedding_provider=COMPONENT_TO_PROTO[f.embedding_provider],
        shadow_enabled=f.shadow_enabled,
        shadow_provider=PROVIDER_TO_PROTO[f.shadow_provider],
        shadow_sample_rate=f.shadow_sample_rate,
        shadow_during_split=f.shadow_during_split,
        shadow_compare_embeddings=f.shadow_compare_embeddings,
        shadow_capture_content=f.shadow_capture_content,
        prompt_policies=[
            control_pb2.PromptPolicy(model=m, system_prefix=p) for m, p in f.prompt_policies
        ],
        stream_timeouts=[
            control_pb2.StreamTimeouts(
                task=TASK_TO_PROTO[o.task],
                provider=PROVIDER_TO_PROTO[o.provider],
                first_token_timeout_ms=o.first_token_timeout_ms,
                idle_timeout_ms=o.idle_timeout_ms,
            )
            for o in f.stream_timeouts
        ],
        continuation_disabled=f.continuation_disabled,
        replicas=[
            control_pb2.EngineReplica(provider=PROVIDER_TO_PROTO[r.provider], url=r.url)
            for r in f.replicas
        ],
        drained_replicas=list(f.drained_replicas),
        shadow_semantic=control_pb2.ShadowSemantic(
            sample_rate=f.shadow_semantic.sample_rate,
            model=f.shadow_semantic.model,
            provider=PROVIDER_TO_PROTO[f.shadow_semantic.provider],
            max_concurrency=f.shadow_semantic.max_concurrency,
            queue_size=f.shadow_semantic.queue_size,
            timeout_ms=f.shadow_semantic.timeout_ms,
        ),
        shadow_judge=control_pb2.ShadowJudge(
            enabled=f.shadow_judge.enabled,
            model=f.shadow_judge.model,
            provider=PROVIDER_TO_PROTO[f.shadow_judge.provider],
            sample_rate=f.shadow_judge.sample_rate,
            max_calls_per_hour=f.shadow_judge.max_calls_per_hour,
            timeout_ms=f.shadow_judge.timeout_ms,
            prompt=f.shadow_judge.prompt,
            swap_check_rate=f.shadow_judge.swap_check_rate,
        ),
        task_defaults=[task_defaults.to_proto(e) for e in f.task_defaults],
        rollback=control_pb2.RollbackThresholds(
            error_rate=r.error_rate,
            latency_p95_ms=r.latency_p95_ms,
            consecutive_timeouts=r.consecutive_timeouts,
            window_seconds=r.window_seconds,
            min_requests=r.min_requests,
            cooldown_seconds=r.cooldown_seconds,
            max_automatic_rollbacks=r.max_automatic_rollbacks,
            timeout_routers_required=r.timeout_routers_required,
            health_failure_threshold=r.health_failure_threshold,
            health_success_threshold=r.health_success_threshold,
            dry_run_rules=list(r.dry_run_rules),
            embed_latency_p95_ms=r.embed_latency_p95_ms,
        ),
    )


def migration_to_proto(m: Migration) -> control_pb2.MigrationState:
    return control_pb2.MigrationState(
        phase=PHASE_TO_PROTO[m.phase],
        split_weight_percent=m.split_weight_percent,
        split_steps=list(m.split_steps),
        status=STATUS_TO_PROTO[m.status],
        status_reason=m.status_reason,
        aborted_phase=(
            PHASE_TO_PROTO[m.aborted_phase] if m.aborted_phase else control_pb2.PHASE_UNSPECIFIED
        ),
        aborted_weight_percent=m.aborted_weight_percent,
        automatic_rollbacks=m.automatic_rollbacks,
        last_rollback_at=(
            timestamp(m.last_rollback_at) if m.last_rollback_at is not None else None
        ),
    )


def catalog_to_proto(c: Catalog) -> control_pb2.Catalog:
    return control_pb2.Catalog(
        models=[
            control_pb2.ModelEntry(
                name=e.name,
                ollama_name=e.ollama_name,
                vllm_name=e.vllm_name,
                fallbacks=list(e.fallbacks),
                embedding=e.embedding,
                ollama_vram_bytes=e.ollama_vram_bytes,
                vllm_vram_bytes=e.vllm_vram_bytes,
                # The router's built-in knowledge of the name, made explicit in the push.
                capabilities=list(DEFAULT_CAPABILITIES.get(e.name, ())),
            )
            for e in c.models
        ],
        task_models=[
            control_pb2.TaskModel(task=TASK_TO_PROTO[t], model=m) for t, m in c.task_models
        ],
    )


def snapshot_to_proto(s: Snapshot) -> control_pb2.ConfigSnapshot:
    return control_pb2.ConfigSnapshot(
        version=s.version,
        flags=flags_to_proto(s.state.flags),
        migration=migration_to_proto(s.state.migration),
        catalog=catalog_to_proto(s.state.catalog),
        vllm_traffic_percent=s.state.migration.vllm_traffic_percent,
        created_at=timestamp(s.created_at),
        mirroring=mirroring(
            s.state.migration.phase.name,
            shadow_enabled=s.state.flags.shadow_enabled,
            shadow_during_split=s.state.flags.shadow_during_split,
            has_shadow_provider=s.state.flags.shadow_provider is not None,
        ),
    )


def encode_session_snapshot(s: Snapshot) -> bytes:
    """The serialized ``RouterSessionResponse`` for ``s``: built once per version and written
    as is to every router session."""
    msg = control_pb2.RouterSessionResponse(snapshot=snapshot_to_proto(s))
    return msg.SerializeToString()


def router_to_proto(r: RouterRecord, current_version: int) -> control_pb2.RouterInfo:
    return control_pb2.RouterInfo(
        router_id=r.router_id,
        address=r.address,
        connected=r.connected,
        state=ROUTER_VIEW_TO_PROTO[r.view(current_version)],
        connected_since=timestamp(r.connected_since),
        last_seen=timestamp(r.last_seen),
        last_sent_version=r.last_sent_version,
        applied_version=r.applied_version,
        last_nack_version=r.last_nack_version,
        last_nack_reason=r.last_nack_reason,
    )


def event_to_proto(e: AuditEvent) -> control_pb2.AuditEvent:
    return control_pb2.AuditEvent(
        version=e.version,
        time=timestamp(e.time),
        actor=e.actor,
        action=e.action,
        reason=e.reason,
        before_json=e.before_json,
        after_json=e.after_json,
    )


# --- proto -> state --------------------------------------------------------------------------


def _provider(value: int, path: str, out: list[FieldViolation]) -> ProviderName | None:
    if value not in PROVIDER_FROM_PROTO:
        out.append(FieldViolation(path, f"unknown provider value {value}"))
        return None
    return PROVIDER_FROM_PROTO[value]


def _replicas(
    msgs: Iterable[control_pb2.EngineReplica], out: list[FieldViolation]
) -> tuple[EngineReplica, ...]:
    """Pushed pool replicas; the engine must be named (the URL is checked by validation)."""
    replicas: list[EngineReplica] = []
    for i, m in enumerate(msgs):
        provider = _provider(m.provider, f"flags.replicas[{i}].provider", out)
        if provider is None:
            if m.provider in PROVIDER_FROM_PROTO:
                out.append(FieldViolation(f"flags.replicas[{i}].provider", "must name an engine"))
            continue
        replicas.append(EngineReplica(provider, m.url))
    return tuple(replicas)


def _stream_task(value: int, path: str, out: list[FieldViolation]) -> TaskName:
    task = _STREAM_TASKS.get(value)
    if task is None:
        out.append(FieldViolation(path, "must name a generate task (embeddings do not stream)"))
        return "analysis"
    return task


def _component(value: int, path: str, out: list[FieldViolation]) -> ComponentProvider:
    if value not in COMPONENT_FROM_PROTO:
        out.append(FieldViolation(path, f"unknown component provider value {value}"))
        return "primary"
    return COMPONENT_FROM_PROTO[value]


def _rules(names: Iterable[str], out: list[FieldViolation]) -> tuple[RollbackRule, ...]:
    rules: list[RollbackRule] = []
    for i, name in enumerate(names):
        if name in ROLLBACK_RULES:
            rules.append(name)
        else:
            out.append(
                FieldViolation(
                    f"flags.rollback.dry_run_rules[{i}]",
                    f"unknown rule {name!r} (known: {', '.join(ROLLBACK_RULES)})",
                )
            )
    return tuple(rules)


def flags_from_proto(msg: control_pb2.Flags) -> Flags:
    """Domain flags from a complete proto; unknown enum values raise InvalidChange."""
    bad: list[FieldViolation] = []
    r = msg.rollback
    flags = Flags(
        primary_provider=_provider(msg.primary_provider, "flags.primary_provider", bad),
        fallback_provider=_provider(msg.fallback_provider, "flags.fallback_provider", bad),
        synthesis_provider=_component(msg.synthesis_provider, "flags.synthesis_provider", bad),
        analysis_provider=_component(msg.analysis_provider, "flags.analysis_provider", bad),
        classification_provider=_component(
            msg.classification_provider, "flags.classification_provider", bad
        ),
        embedding_provider=_component(msg.embedding_provider, "flags.embedding_provider", bad),
        shadow_enabled=msg.shadow_enabled,
        shadow_provider=_provider(msg.shadow_provider, "flags.shadow_provider", bad),
        shadow_sample_rate=msg.shadow_sample_rate,
        shadow_during_split=msg.shadow_during_split,
        shadow_compare_embeddings=msg.shadow_compare_embeddings,
        shadow_capture_content=msg.shadow_capture_content,
        prompt_policies=tuple((p.model, p.system_prefix) for p in msg.prompt_policies),
        stream_timeouts=tuple(
            StreamTimeoutOverride(
                _stream_task(o.task, f"flags.stream_timeouts[{i}].task", bad),
                _provider(o.provider, f"flags.stream_timeouts[{i}].provider", bad),
                o.first_token_timeout_ms,
                o.idle_timeout_ms,
            )
            for i, o in enumerate(msg.stream_timeouts)
        ),
        continuation_disabled=msg.continuation_disabled,
        replicas=_replicas(msg.replicas, bad),
        drained_replicas=tuple(msg.drained_replicas),
        shadow_semantic=ShadowSemantic(
            sample_rate=msg.shadow_semantic.sample_rate,
            model=msg.shadow_semantic.model,
            provider=_provider(msg.shadow_semantic.provider, "flags.shadow_semantic.provider", bad),
            max_concurrency=msg.shadow_semantic.max_concurrency,
            queue_size=msg.shadow_semantic.queue_size,
            timeout_ms=msg.shadow_semantic.timeout_ms,
        ),
        shadow_judge=ShadowJudge(
            enabled=msg.shadow_judge.enabled,
            model=msg.shadow_judge.model,
            provider=_provider(msg.shadow_judge.provider, "flags.shadow_judge.provider", bad),
            sample_rate=msg.shadow_judge.sample_rate,
            max_calls_per_hour=msg.shadow_judge.max_calls_per_hour,
            timeout_ms=msg.shadow_judge.timeout_ms,
            prompt=msg.shadow_judge.prompt,
            swap_check_rate=msg.shadow_judge.swap_check_rate,
        ),
        task_defaults=task_defaults.from_proto(msg.task_defaults, bad),
        rollback=RollbackThresholds(
            error_rate=r.error_rate,
            latency_p95_ms=r.latency_p95_ms,
            consecutive_timeouts=r.consecutive_timeouts,
            window_seconds=r.window_seconds,
            min_requests=r.min_requests,
            cooldown_seconds=r.cooldown_seconds,
            max_automatic_rollbacks=r.max_automatic_rollbacks,
            timeout_routers_required=r.timeout_routers_required,
            health_failure_threshold=r.health_failure_threshold,
            health_success_threshold=r.health_success_threshold,
            dry_run_rules=_rules(r.dry_run_rules, bad),
            embed_latency_p95_ms=r.embed_latency_p95_ms,
        ),
    )
    if bad:
        raise InvalidChange(bad)
    return flags


def apply_flags_update(
    current: Flags, update: control_pb2.Flags, mask: field_mask_pb2.FieldMask
) -> Flags:
    """``current`` with the fields named by ``mask`` taken from ``update``. A message path
    (``rollback``) replaces the whole sub-message; an empty or unknown path is INVALID_ARGUMENT."""
    if not mask.paths:
        raise InvalidChange(
            [FieldViolation("update_mask", "must name at least one Flags field to change")]
        )
    descriptor = control_pb2.Flags.DESCRIPTOR
    unknown = [
        p
        for p in mask.paths
        if not field_mask_pb2.FieldMask(paths=[p]).IsValidForDescriptor(descriptor)
    ]
    if unknown:
        raise InvalidChange(
            [FieldViolation("update_mask", f"unknown Flags field {p!r}") for p in unknown]
        )
    merged = flags_to_proto(current)
    mask.MergeMessage(update, merged, replace_message_field=True, replace_repeated_field=True)
    return flags_from_proto(merged)


def phase_from_proto(value: int, path: str) -> Phase | None:
    """None for PHASE_UNSPECIFIED; InvalidChange for a value the domain does not know."""
    if value == control_pb2.PHASE_UNSPECIFIED:
        return None
    if value not in PHASE_FROM_PROTO:
        raise InvalidChange([FieldViolation(path, f"unknown phase value {value}")])
    return PHASE_FROM_PROTO[value]


def _histogram(msg: control_pb2.Histogram) -> sw.Histogram | None:
    if not msg.counts:
        return None
    return sw.Histogram(tuple(msg.upper_bounds), list(msg.counts), msg.sum)


def stats_report_from_proto(router_id: str, msg: control_pb2.StatsReport) -> sw.Report:
    """Raises ValueError for a malformed histogram or an unknown provider."""
    entries: list[sw.Entry] = []
    for s in msg.stats:
        provider = PROVIDER_FROM_PROTO.get(s.provider)
        if provider is None:
            raise ValueError(f"stats for unknown provider value {s.provider}")
        entries.append(
            sw.Entry(
                provider=provider,
                task=TASK_FROM_PROTO.get(s.task, "analysis"),
                requests=s.requests,
                errors=s.errors,
                timeouts=s.timeouts,
                consecutive_timeouts=s.consecutive_timeouts,
                errors_by_code={
                    _error_code_name(e.code): e.count for e in s.errors_by_code if e.count
                },
                ttft_ms=_histogram(s.ttft_ms),
                total_ms=_histogram(s.total_ms),
                prompt_tokens=s.prompt_tokens,
                completion_tokens=s.completion_tokens,
                shadow=s.shadow,
            )
        )
    return sw.Report(
        router_id=router_id,
        config_version=msg.config_version,
        interval_start=seconds(msg.interval_start),
        interval_end=seconds(msg.interval_end),
        entries=entries,
    )


def _error_code_name(code: int) -> str:
    try:
        return common_pb2.ErrorCode.Name(code).removeprefix("ERROR_CODE_")  # type: ignore[arg-type]
    except ValueError:
        return str(code)


# --- go/no-go --------------------------------------------------------------------------------

VERDICT_TO_PROTO: dict[gate.Verdict, control_pb2.Verdict.ValueType] = {
    gate.Verdict.GO: control_pb2.VERDICT_GO,
    gate.Verdict.NO_GO: control_pb2.VERDICT_NO_GO,
    gate.Verdict.INCONCLUSIVE: control_pb2.VERDICT_INCONCLUSIVE,
}


def gate_to_proto(result: gate.GateResult) -> control_pb2.EvaluateGoNoGoResponse:
    return control_pb2.EvaluateGoNoGoResponse(
        verdict=VERDICT_TO_PROTO[result.verdict],
        criteria=[
            control_pb2.Criterion(
                name=c.name,
                verdict=VERDICT_TO_PROTO[c.verdict],
                value=c.value,
                threshold=c.threshold,
                detail=c.detail,
            )
            for c in result.criteria
        ],
    )


def parity_to_proto(
    m: Measurement, min_cosine_p10: float, min_overlap: float
) -> control_pb2.MeasureEmbeddingParityResponse:
    p = m.parity
    return control_pb2.MeasureEmbeddingParityResponse(
        model=m.model,
        ollama_model=m.engine_models["ollama"],
        vllm_model=m.engine_models["vllm"],
        texts=[
            control_pb2.TextParity(index=t.index, cosine=t.cosine, overlap=t.overlap)
            for t in p.texts
        ],
        cosine_mean=p.cosine_mean,
        cosine_p10=p.cosine_p10,
        overlap_at_k=p.overlap_at_k,
        k=p.k,
        passed=p.passed,
        detail=p.detail,
        min_cosine_p10=min_cosine_p10,
        min_overlap=min_overlap,
        measured_at=timestamp(m.at),
    )
