"""The desired-state model: seed defaults, the JSON form, the audit diff."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from control_service import phases
from control_service.state import (
    TASKS,
    Phase,
    changed_parts,
    default_state,
    dumps,
    loads,
)
from router_service.catalog import DEFAULT_ENGINE_NAMES, DEFAULT_FALLBACKS, DEFAULT_TASK_MODELS


def test_defaults_come_from_the_seed_and_the_router_catalog() -> None:
    s = default_state()
    f = s.flags
    assert (f.primary_provider, f.embedding_provider, f.shadow_enabled) == (
        "ollama",
        "ollama",
        False,
    )
    assert (f.rollback.error_rate, f.rollback.latency_p95_ms) == (0.05, 5000)
    assert (f.rollback.consecutive_timeouts, f.rollback.window_seconds) == (3, 300)
    assert s.migration.split_steps == (10, 30, 70)
    assert s.migration.phase is Phase.FACADE
    assert {m.name for m in s.catalog.models} == set(DEFAULT_ENGINE_NAMES)
    for m in s.catalog.models:
        assert m.vllm_name == DEFAULT_ENGINE_NAMES[m.name]["vllm"]
        assert list(m.fallbacks) == DEFAULT_FALLBACKS.get(m.name, [])
    assert dict(s.catalog.task_models) == DEFAULT_TASK_MODELS
    assert [t for t, _ in s.catalog.task_models] == list(TASKS)


def test_json_round_trip() -> None:
    s = default_state()
    s = replace(s, migration=phases.abort(phases.set_weight(phases.promote(s.migration), 40)))
    assert loads(dumps(s)) == s


def test_malformed_json_is_refused() -> None:
    doc = json.loads(dumps(default_state()))
    doc["flags"]["primary_provider"] = "llamafile"
    with pytest.raises(ValueError, match="llamafile"):
        loads(json.dumps(doc))


def test_changed_parts_lists_only_changed_leaves() -> None:
    a = default_state()
    b = replace(a, migration=phases.promote(a.migration))
    before, after = changed_parts(a, b)
    assert json.loads(before) == {"migration.phase": "FACADE"}
    assert json.loads(after) == {"migration.phase": "SHADOW"}
