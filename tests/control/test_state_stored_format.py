"""The stored JSON form of the desired state stays readable across the switch from the
hand-written ``to_dict``/``from_dict`` to pydantic.

The fixtures were written by main at 46e66fd (the hand-written codec), before the switch:
``state_v1_main_46e66fd.json`` is ``dumps`` of :func:`_every_field_set` (every field away from
its default), ``state_oldest_keys.json`` a default state without the keys added after the first
release, and ``*.changed.json`` the audit diff from the default state to the first one.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from control_service import state as st
from control_service.state import (
    Catalog,
    DesiredState,
    Migration,
    ModelEntry,
    Phase,
    RollbackThresholds,
    RolloutStatus,
    default_state,
)
from control_service.store import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures"
WRITTEN = FIXTURES / "state_v1_main_46e66fd.json"


def _every_field_set() -> DesiredState:
    s = default_state((5, 25, 50))
    flags = replace(
        s.flags,
        primary_provider="vllm",
        fallback_provider=None,
        synthesis_provider="vllm",
        analysis_provider="ollama",
        embedding_provider="primary",
        shadow_enabled=True,
        shadow_provider="ollama",
        shadow_sample_rate=0.25,
        shadow_during_split=True,
        shadow_compare_embeddings=True,
        shadow_capture_content=True,
        prompt_policies=(
            ("deepseek-r1:14b", "Think step by step, but only keep a minimum draft."),
        ),
        rollback=RollbackThresholds(
            error_rate=0.1,
            latency_p95_ms=4000,
            consecutive_timeouts=5,
            window_seconds=120,
            min_requests=20,
            cooldown_seconds=60,
            max_automatic_rollbacks=2,
            timeout_routers_required=1,
            health_failure_threshold=4,
            health_success_threshold=3,
            dry_run_rules=("latency_p95", "health"),
            embed_latency_p95_ms=2500,
        ),
    )
    migration = Migration(
        phase=Phase.FACADE,
        split_weight_percent=0,
        split_steps=(5, 25, 50),
        status=RolloutStatus.ABORTED,
        status_reason="automatic rollback: error_rate 0.12 > 0.1",
        aborted_phase=Phase.SPLIT,
        aborted_weight_percent=25,
        automatic_rollbacks=1,
        last_rollback_at=1764876000.5,
    )
    models = list(s.catalog.models)
    models[0] = replace(
        models[0], ollama_vram_bytes=123, vllm_vram_bytes=456, fallbacks=("qwen3:8b",)
    )
    extra = ModelEntry("custom:1b", ollama_name="custom:1b", vllm_name="org/custom-1b")
    return DesiredState(flags, migration, Catalog((*models, extra), s.catalog.task_models))


def test_a_document_written_by_the_hand_written_codec_loads_to_the_same_state() -> None:
    assert st.loads(WRITTEN.read_text()) == _every_field_set()


# Flags added after the fixture was written; the hand-written codec ignores keys it does not
# know, so a store written now still reads in that build.
LATER_FLAGS = (
    "stream_timeouts",
    "continuation_disabled",
    "shadow_semantic",
    "shadow_judge",
    "task_defaults",
    "replicas",
    "drained_replicas",
)


def test_the_written_form_is_byte_for_byte_what_the_hand_written_codec_wrote() -> None:
    # Same keys, same value shapes (phases by name, tuples as lists, None as null), so a store
    # written by either build reads the same in the other.
    doc = st.to_dict(_every_field_set())
    for key in LATER_FLAGS:
        doc["flags"].pop(key)
    assert json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n" == WRITTEN.read_text()


def test_the_audit_diff_is_unchanged() -> None:
    before, after = st.changed_parts(default_state(), _every_field_set())
    expected = json.loads((FIXTURES / "state_v1_main_46e66fd.changed.json").read_text())
    assert (json.loads(before), json.loads(after)) == (expected["before"], expected["after"])


def test_a_document_from_before_the_later_keys_loads_with_their_defaults() -> None:
    # Sizes default by model name (the seed's), the rest to the fields' defaults.
    assert st.loads((FIXTURES / "state_oldest_keys.json").read_text()) == default_state()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["migration"].update(phase="SIDEWAYS"), "migration.phase: "),
        (lambda d: d["migration"].update(aborted_phase="NOPE"), "migration.aborted_phase: "),
        (lambda d: d["migration"].update(status="DONE"), "migration.status: "),
        (lambda d: d["catalog"]["task_models"].append(["poem", "x"]), "catalog.task_models.7.0: "),
        (lambda d: d["catalog"]["models"][0].update(name=7), "catalog.models.0.name: "),
        (lambda d: d["flags"]["rollback"].update(min_requests="many"), "rollback.min_requests"),
    ],
)  # fmt: skip
def test_a_malformed_document_is_one_line_naming_each_bad_field(change: object, named: str) -> None:
    doc = json.loads(WRITTEN.read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(ValueError, match=re.escape(named)) as exc:
        st.from_dict(doc)
    assert "\n" not in str(exc.value)


async def test_the_sqlite_store_opens_a_database_holding_the_old_document(tmp_path: Path) -> None:
    path = tmp_path / "control.db"
    store = SqliteStore(path)
    await store.open(default_state())
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE snapshots SET state_json = ? WHERE version = 1", (WRITTEN.read_text(),))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        snap = await store.open(default_state())
        assert (snap.version, snap.state) == (1, _every_field_set())
    finally:
        await store.close()
