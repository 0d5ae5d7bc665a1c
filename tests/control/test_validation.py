"""Whole-config validation with plain data: every bad value is named by its field path."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from control_service import validation
from control_service.errors import InvalidChange
from control_service.evaluation_flags import ShadowJudge, ShadowSemantic
from control_service.state import (
    Catalog,
    DesiredState,
    Flags,
    Migration,
    ModelEntry,
    Phase,
    RollbackThresholds,
    RolloutStatus,
    default_catalog,
    default_state,
)

DEFAULT = default_state()


def fields(state: DesiredState) -> list[str]:
    return [v.field for v in validation.violations(state)]


def with_flags(**changes: Any) -> DesiredState:
    return replace(DEFAULT, flags=replace(DEFAULT.flags, **changes))


def with_rollback(**changes: Any) -> DesiredState:
    return with_flags(rollback=replace(RollbackThresholds(), **changes))


def test_the_seed_defaults_are_valid() -> None:
    assert validation.violations(DEFAULT) == []
    assert validation.check(DEFAULT) is DEFAULT


BAD_FLAGS: list[tuple[str, DesiredState, str]] = [
    ("no primary", with_flags(primary_provider=None), "flags.primary_provider"),
    (
        "fallback equals primary",
        with_flags(primary_provider="ollama", fallback_provider="ollama"),
        "flags.fallback_provider",
    ),
    (
        "fallback equals vllm primary",
        with_flags(primary_provider="vllm", fallback_provider="vllm"),
        "flags.fallback_provider",
    ),
    (
        "shadow without provider",
        with_flags(shadow_enabled=True, shadow_provider=None),
        "flags.shadow_provider",
    ),
    (
        "shadow to the primary",
        with_flags(shadow_enabled=True, shadow_provider="ollama"),
        "flags.shadow_provider",
    ),
    (
        "shadow with zero rate",
        with_flags(shadow_enabled=True, shadow_sample_rate=0.0),
        "flags.shadow_sample_rate",
    ),
    ("sample rate above 1", with_flags(shadow_sample_rate=1.5), "flags.shadow_sample_rate"),
    ("sample rate negative", with_flags(shadow_sample_rate=-0.1), "flags.shadow_sample_rate"),
    ("sample rate NaN", with_flags(shadow_sample_rate=math.nan), "flags.shadow_sample_rate"),
    ("error rate above 1", with_rollback(error_rate=1.01), "flags.rollback.error_rate"),
    ("error rate negative", with_rollback(error_rate=-0.01), "flags.rollback.error_rate"),
    ("error rate NaN", with_rollback(error_rate=math.nan), "flags.rollback.error_rate"),
    ("error rate inf", with_rollback(error_rate=math.inf), "flags.rollback.error_rate"),
    ("p95 zero", with_rollback(latency_p95_ms=0), "flags.rollback.latency_p95_ms"),
    ("p95 too large", with_rollback(latency_p95_ms=600_001), "flags.rollback.latency_p95_ms"),
    (
        "consecutive timeouts zero",
        with_rollback(consecutive_timeouts=0),
        "flags.rollback.consecutive_timeouts",
    ),
    (
        "consecutive timeouts too many",
        with_rollback(consecutive_timeouts=1001),
        "flags.rollback.consecutive_timeouts",
    ),
    ("window too short", with_rollback(window_seconds=9), "flags.rollback.window_seconds"),
    ("window too long", with_rollback(window_seconds=86_401), "flags.rollback.window_seconds"),
    ("min requests zero", with_rollback(min_requests=0), "flags.rollback.min_requests"),
    (
        "min requests too many",
        with_rollback(min_requests=1_000_001),
        "flags.rollback.min_requests",
    ),
]


@pytest.mark.parametrize(
    ("state", "field"), [c[1:] for c in BAD_FLAGS], ids=[c[0] for c in BAD_FLAGS]
)
def test_bad_flag_value_is_named(state: DesiredState, field: str) -> None:
    assert fields(state) == [field]
    with pytest.raises(InvalidChange) as exc:
        validation.check(state)
    assert exc.value.violations[0].field == field


def test_every_violation_is_reported_at_once() -> None:
    state = with_flags(
        primary_provider=None,
        shadow_sample_rate=2.0,
        rollback=RollbackThresholds(error_rate=2, latency_p95_ms=0),
    )
    assert fields(state) == [
        "flags.primary_provider",
        "flags.shadow_sample_rate",
        "flags.rollback.error_rate",
        "flags.rollback.latency_p95_ms",
    ]


def test_valid_edges() -> None:
    assert fields(with_flags(fallback_provider=None)) == []
    assert fields(with_flags(shadow_enabled=True, shadow_sample_rate=1.0)) == []
    assert fields(with_flags(primary_provider="vllm", fallback_provider="ollama")) == []
    assert fields(with_rollback(error_rate=0.0, window_seconds=10, min_requests=1)) == []


def _catalog(**changes: Any) -> DesiredState:
    return replace(DEFAULT, catalog=replace(default_catalog(), **changes))


def _model(catalog: Catalog, name: str, **changes: Any) -> tuple[ModelEntry, ...]:
    return tuple(replace(m, **changes) if m.name == name else m for m in catalog.models)


def test_pinned_component_needs_an_engine_that_serves_its_model() -> None:
    cat = default_catalog()
    no_vllm_embed = _model(cat, "mxbai-embed-large", vllm_name="")
    state = replace(
        DEFAULT,
        catalog=replace(cat, models=no_vllm_embed),
        flags=replace(Flags(), embedding_provider="vllm"),
    )
    assert fields(state) == ["flags.embedding_provider"]


def test_catalog_errors_are_named() -> None:
    cat = default_catalog()
    index = {m.name: i for i, m in enumerate(cat.models)}
    qwen = index["qwen3:8b"]
    assert fields(_catalog(models=_model(cat, "qwen3:8b", fallbacks=("nope:1b",)))) == [
        f"catalog.models[{qwen}].fallbacks[0]"
    ]
    # A cycle names every model on it.
    cyc = _model(cat, "llama3.2:3b", fallbacks=("qwen3:8b",))
    assert set(fields(_catalog(models=cyc))) == {
        f"catalog.models[{qwen}].fallbacks",
        f"catalog.models[{index['llama3.2:3b']}].fallbacks",
    }
    assert fields(_catalog(models=_model(cat, "qwen3:8b", fallbacks=("qwen3:8b",)))) == [
        f"catalog.models[{qwen}].fallbacks"
    ]
    assert fields(_catalog(models=_model(cat, "gemma3:4b", ollama_name="", vllm_name=""))) == [
        f"catalog.models[{index['gemma3:4b']}]"
    ]
    assert fields(_catalog(models=_model(cat, "qwen3:8b", fallbacks=("mxbai-embed-large",)))) == [
        f"catalog.models[{qwen}].fallbacks[0]"
    ]
    dup = (*cat.models, ModelEntry("qwen3:8b", ollama_name="qwen3:8b"))
    assert fields(_catalog(models=dup)) == [f"catalog.models[{len(cat.models)}].name"]
    assert fields(_catalog(models=(*cat.models, ModelEntry("", ollama_name="x")))) == [
        f"catalog.models[{len(cat.models)}].name"
    ]


def test_task_models_must_name_known_models_of_the_right_kind() -> None:
    cat = default_catalog()
    tm = list(cat.task_models)
    i = next(k for k, (t, _) in enumerate(tm) if t == "analysis")
    tm[i] = ("analysis", "missing:1b")
    assert fields(_catalog(task_models=tuple(tm))) == [f"catalog.task_models[{i}].model"]
    tm[i] = ("analysis", "mxbai-embed-large")
    assert fields(_catalog(task_models=tuple(tm))) == [f"catalog.task_models[{i}].model"]
    del tm[i]
    assert fields(_catalog(task_models=tuple(tm))) == ["catalog.task_models"]
    dup = (*cat.task_models, ("analysis", "qwen3:8b"))
    assert fields(_catalog(task_models=dup)) == [f"catalog.task_models[{len(dup) - 1}].task"]
    assert fields(_catalog(models=())) == [
        "catalog.models",
        *[f"catalog.task_models[{k}].model" for k in range(len(cat.task_models))],
    ]


@pytest.mark.parametrize(
    ("migration", "field"),
    [
        (Migration(split_steps=()), "migration.split_steps"),
        (Migration(split_steps=(30, 10)), "migration.split_steps"),
        (Migration(split_steps=(0, 10)), "migration.split_steps"),
        (Migration(split_steps=(10, 100)), "migration.split_steps"),
        (Migration(phase=Phase.FACADE, split_weight_percent=5), "migration.split_weight_percent"),
        (Migration(phase=Phase.SPLIT, split_weight_percent=0), "migration.split_weight_percent"),
        (Migration(phase=Phase.PRIMARY, split_weight_percent=70), "migration.split_weight_percent"),
        (Migration(status=RolloutStatus.ABORTED), "migration.aborted_phase"),
        (Migration(aborted_phase=Phase.SPLIT), "migration.aborted_phase"),
        (
            Migration(phase=Phase.SHADOW, status=RolloutStatus.ABORTED, aborted_phase=Phase.SHADOW),
            "migration.phase",
        ),
    ],
)
def test_migration_invariants(migration: Migration, field: str) -> None:
    assert fields(replace(DEFAULT, migration=migration)) == [field]


@pytest.mark.parametrize(
    ("semantic", "field"),
    [
        (ShadowSemantic(sample_rate=1.5), "flags.shadow_semantic.sample_rate"),
        (ShadowSemantic(model="gpt-17"), "flags.shadow_semantic.model"),
        (ShadowSemantic(model="qwen3:8b"), "flags.shadow_semantic.model"),  # not an embedder
        (ShadowSemantic(max_concurrency=-1), "flags.shadow_semantic.max_concurrency"),
        (ShadowSemantic(queue_size=10**6), "flags.shadow_semantic.queue_size"),
        (ShadowSemantic(timeout_ms=-5), "flags.shadow_semantic.timeout_ms"),
    ],
)
def test_bad_semantic_scorer_flags_name_the_field(semantic: ShadowSemantic, field: str) -> None:
    assert fields(with_flags(shadow_semantic=semantic)) == [field]


def test_the_semantic_scorer_engine_must_serve_its_model() -> None:
    catalog = default_catalog()
    only_ollama = tuple(replace(m, vllm_name="") if m.embedding else m for m in catalog.models)
    state = replace(
        with_flags(shadow_semantic=ShadowSemantic(provider="vllm")),
        catalog=replace(catalog, models=only_ollama),
    )
    assert fields(state) == ["flags.shadow_semantic.provider"]
    assert (
        fields(with_flags(shadow_semantic=ShadowSemantic(provider="ollama", sample_rate=0.2))) == []
    )


def _judge(**kw: Any) -> ShadowJudge:
    base: dict[str, Any] = {"enabled": True, "model": "llama3.3:70b", "provider": "ollama"}
    return ShadowJudge(**{**base, **kw})


@pytest.mark.parametrize(
    ("judge", "field"),
    [
        (_judge(model="qwen3:8b"), "flags.shadow_judge.model"),  # an arm: the analysis model
        (_judge(model="gemma3:4b"), "flags.shadow_judge.model"),  # an arm on either engine
        (_judge(model=""), "flags.shadow_judge.model"),
        (_judge(model="gpt-17"), "flags.shadow_judge.model"),
        (_judge(model="mxbai-embed-large"), "flags.shadow_judge.model"),
        (_judge(provider=None), "flags.shadow_judge.provider"),
        (_judge(sample_rate=2.0), "flags.shadow_judge.sample_rate"),
        (_judge(swap_check_rate=-0.1), "flags.shadow_judge.swap_check_rate"),
        (_judge(max_calls_per_hour=-1), "flags.shadow_judge.max_calls_per_hour"),
        (_judge(timeout_ms=10**9), "flags.shadow_judge.timeout_ms"),
        (_judge(prompt="Which is better? {answer_a}"), "flags.shadow_judge.prompt"),
        (_judge(prompt="{answer_a} {answer_b} {nope}"), "flags.shadow_judge.prompt"),
    ],
)
def test_bad_judge_flags_name_the_field(judge: ShadowJudge, field: str) -> None:
    assert fields(with_flags(shadow_judge=judge)) == [field]


def test_a_judge_that_is_no_arm_is_accepted_and_an_arm_refused_whatever_changes() -> None:
    ok = with_flags(shadow_judge=_judge(prompt="Q {question}: {answer_a} or {answer_b}? {{}}"))
    assert fields(ok) == []
    # Giving a task the judge's model later makes the judge an arm: refused too.
    catalog = replace(
        ok.catalog,
        task_models=tuple(
            (t, "llama3.3:70b" if t == "reflection" else m) for t, m in ok.catalog.task_models
        ),
    )
    assert fields(replace(ok, catalog=catalog)) == ["flags.shadow_judge.model"]
