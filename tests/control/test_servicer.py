"""ControlService over a real grpc.aio server on 127.0.0.1:0: operator verbs, flags, CAS,
audit log and error statuses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from tests.control.conftest import Control, error_info, meta, start, violations

P = control_pb2


async def test_get_state_starts_at_version_1_with_the_seed(control: Control) -> None:
    state = await control.stub.GetState(P.GetStateRequest())
    s = state.snapshot
    assert s.version == 1
    assert s.migration.phase == P.PHASE_FACADE
    assert list(s.migration.split_steps) == [10, 30, 70]
    assert s.migration.status == P.ROLLOUT_STATUS_ACTIVE
    assert s.flags.primary_provider == common_pb2.PROVIDER_OLLAMA
    assert s.flags.embedding_provider == P.COMPONENT_PROVIDER_OLLAMA
    assert s.flags.rollback.error_rate == pytest.approx(0.05)
    assert s.vllm_traffic_percent == 0
    assert {m.name for m in s.catalog.models} >= {"qwen3:8b", "mxbai-embed-large"}
    assert len(s.catalog.task_models) == 7
    assert s.created_at.seconds > 0
    assert list(state.routers) == []


async def test_operator_verbs_walk_the_migration(control: Control) -> None:
    stub = control.stub
    r = await stub.Promote(P.PromoteRequest(meta=meta()))
    assert (r.snapshot.version, r.snapshot.migration.phase) == (2, P.PHASE_SHADOW)
    r2 = await stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=20))
    s = r2.snapshot
    assert (s.migration.phase, s.migration.split_weight_percent, s.vllm_traffic_percent) == (
        P.PHASE_SPLIT,
        20,
        20.0,
    )
    s = (await stub.Promote(P.PromoteRequest(meta=meta()))).snapshot
    assert s.migration.split_weight_percent == 30
    s = (await stub.Pause(P.PauseRequest(meta=meta(reason="watching p95")))).snapshot
    assert (s.migration.status, s.migration.status_reason) == (
        P.ROLLOUT_STATUS_PAUSED,
        "watching p95",
    )
    s = (await stub.Resume(P.ResumeRequest(meta=meta()))).snapshot
    assert s.migration.status == P.ROLLOUT_STATUS_ACTIVE
    s = (await stub.Abort(P.AbortRequest(meta=meta(reason="5xx")))).snapshot
    assert (s.migration.status, s.vllm_traffic_percent) == (P.ROLLOUT_STATUS_ABORTED, 0)
    assert (s.migration.aborted_phase, s.migration.aborted_weight_percent) == (P.PHASE_SPLIT, 30)
    s = (await stub.Retry(P.RetryRequest(meta=meta()))).snapshot
    assert (s.migration.phase, s.vllm_traffic_percent) == (P.PHASE_SPLIT, 30)
    # Into PRIMARY only past the go/no-go gate (no data here: INCONCLUSIVE), or forced.
    s = (
        await stub.Promote(P.PromoteRequest(meta=meta(reason="by hand"), full=True, force=True))
    ).snapshot
    assert (s.migration.phase, s.vllm_traffic_percent) == (P.PHASE_PRIMARY, 100)
    s = (await stub.Undo(P.UndoRequest(meta=meta()))).snapshot
    assert (s.migration.phase, s.migration.split_weight_percent) == (P.PHASE_SPLIT, 70)
    s = (await stub.Undo(P.UndoRequest(meta=meta(), to_phase=P.PHASE_FACADE))).snapshot
    assert (s.migration.phase, s.version) == (P.PHASE_FACADE, 11)


async def test_illegal_transitions_are_failed_precondition(control: Control) -> None:
    stub = control.stub
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=10))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "promote to PHASE_SHADOW first" in (exc.value.details() or "")
    assert error_info(exc.value).reason == "ILLEGAL_TRANSITION"
    await stub.Pause(P.PauseRequest(meta=meta()))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Promote(P.PromoteRequest(meta=meta()))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "paused" in (exc.value.details() or "")
    await stub.Abort(P.AbortRequest(meta=meta()))
    for call in (
        stub.Promote(P.PromoteRequest(meta=meta())),
        stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=10)),
        stub.Pause(P.PauseRequest(meta=meta())),
        stub.Resume(P.ResumeRequest(meta=meta())),
        stub.Abort(P.AbortRequest(meta=meta())),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    state = await stub.GetState(P.GetStateRequest())
    assert state.snapshot.version == 3  # pause, abort; nothing else was accepted


async def test_bad_arguments_are_invalid_argument_naming_the_field(control: Control) -> None:
    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=100))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["weight_percent"]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.Undo(P.UndoRequest(meta=meta(), to_phase=9))  # type: ignore[arg-type]
    assert violations(exc.value) == ["to_phase"]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.ListEvents(P.ListEventsRequest(page_size=1001))
    assert violations(exc.value) == ["page_size"]


def flags_update(paths: list[str], expected: int = 0, **flags: Any) -> P.UpdateFlagsRequest:
    return P.UpdateFlagsRequest(
        meta=meta(expected),
        flags=P.Flags(**flags),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


async def test_update_flags_changes_only_the_masked_fields(control: Control) -> None:
    r = await control.stub.UpdateFlags(
        flags_update(
            ["shadow_enabled", "shadow_sample_rate", "rollback.error_rate"],
            shadow_enabled=True,
            shadow_sample_rate=0.2,
            rollback=P.RollbackThresholds(error_rate=0.1),
        )
    )
    f = r.snapshot.flags
    assert f.shadow_enabled
    assert f.shadow_sample_rate == pytest.approx(0.2)
    assert f.rollback.error_rate == pytest.approx(0.1)
    assert f.rollback.latency_p95_ms == 5000  # untouched
    assert f.primary_provider == common_pb2.PROVIDER_OLLAMA
    assert r.snapshot.version == 2
    # The same values again: no change, no new version.
    again = await control.stub.UpdateFlags(
        flags_update(["shadow_sample_rate"], shadow_sample_rate=0.2)
    )
    assert again.snapshot.version == 2


@pytest.mark.parametrize(
    ("paths", "flags", "field"),
    [
        (["rollback.error_rate"], {"rollback": P.RollbackThresholds(error_rate=1.5)}, None),
        (["shadow_sample_rate"], {"shadow_sample_rate": -1.0}, None),
        (["fallback_provider"], {"fallback_provider": common_pb2.PROVIDER_OLLAMA}, None),
        (["primary_provider"], {"primary_provider": 7}, "flags.primary_provider"),
        (["synthesis_provider"], {"synthesis_provider": 9}, "flags.synthesis_provider"),
        (["rollback"], {"rollback": P.RollbackThresholds(error_rate=0.1)}, None),
        ([], {}, "update_mask"),
        (["nope"], {}, "update_mask"),
    ],
)
async def test_update_flags_refuses_bad_values(
    control: Control, paths: list[str], flags: dict[str, Any], field: str | None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.UpdateFlags(flags_update(paths, **flags))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = {
        "rollback.error_rate": ["flags.rollback.error_rate"],
        "shadow_sample_rate": ["flags.shadow_sample_rate"],
        "fallback_provider": ["flags.fallback_provider"],
        # Replacing the whole sub-message zeroes the thresholds it does not set.
        "rollback": [
            "flags.rollback.latency_p95_ms",
            "flags.rollback.consecutive_timeouts",
            "flags.rollback.window_seconds",
            "flags.rollback.min_requests",
            "flags.rollback.timeout_routers_required",
            "flags.rollback.health_failure_threshold",
            "flags.rollback.health_success_threshold",
            "flags.rollback.embed_latency_p95_ms",
        ],
    }
    want = [field] if field else expected[paths[0]]
    assert violations(exc.value) == want
    assert error_info(exc.value).domain == "llmgateway"
    assert (await control.stub.GetState(P.GetStateRequest())).snapshot.version == 1


async def test_compare_and_set(control: Control) -> None:
    await control.stub.Promote(P.PromoteRequest(meta=meta(expected_version=1)))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.Promote(P.PromoteRequest(meta=meta(expected_version=1)))
    assert exc.value.code() == grpc.StatusCode.ABORTED
    assert error_info(exc.value).metadata["current_version"] == "2"
    assert (await control.stub.GetState(P.GetStateRequest())).snapshot.version == 2


async def test_racing_writers_with_the_same_expected_version(control: Control) -> None:
    async def write(rate: float) -> grpc.StatusCode:
        try:
            await control.stub.UpdateFlags(
                flags_update(["shadow_sample_rate"], 1, shadow_sample_rate=rate)
            )
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    for _ in range(5):
        cur = (await control.stub.GetState(P.GetStateRequest())).snapshot.version
        codes = await asyncio.gather(
            *(
                control.stub.UpdateFlags(
                    flags_update(["shadow_sample_rate"], cur, shadow_sample_rate=r)
                )
                for r in (0.3 + cur / 100, 0.6 + cur / 100)
            ),
            return_exceptions=True,
        )
        ok = [c for c in codes if isinstance(c, P.UpdateFlagsResponse)]
        lost = [c for c in codes if isinstance(c, grpc.aio.AioRpcError)]
        assert len(ok) == 1
        assert len(lost) == 1
        assert lost[0].code() == grpc.StatusCode.ABORTED
        assert ok[0].snapshot.version == cur + 1
    assert await write(0.9) == grpc.StatusCode.ABORTED  # expected 1 is long gone


async def test_audit_log_pages_newest_first(control: Control) -> None:
    await control.stub.Promote(P.PromoteRequest(meta=meta(actor="alice", reason="go")))
    await control.stub.SetWeight(P.SetWeightRequest(meta=meta(actor="bob"), weight_percent=15))
    await control.stub.UpdateFlags(flags_update(["shadow_sample_rate"], shadow_sample_rate=0.5))
    page = await control.stub.ListEvents(P.ListEventsRequest(page_size=2))
    assert [(e.version, e.action) for e in page.events] == [(4, "update_flags"), (3, "set_weight")]
    assert page.next_before_version == 3
    rest = await control.stub.ListEvents(P.ListEventsRequest(page_size=2, before_version=3))
    assert [(e.version, e.action, e.actor) for e in rest.events] == [
        (2, "promote", "alice"),
        (1, "init", "control-service"),
    ]
    assert rest.next_before_version == 0
    promote = rest.events[0]
    assert promote.reason == "go"
    assert json.loads(promote.before_json) == {"migration.phase": "FACADE"}
    assert json.loads(promote.after_json) == {"migration.phase": "SHADOW"}
    assert promote.time.seconds > 0
    weight = page.events[1]
    assert json.loads(weight.after_json) == {
        "migration.phase": "SPLIT",
        "migration.split_weight_percent": 15,
    }


async def test_anonymous_actor(control: Control) -> None:
    await control.stub.Promote(P.PromoteRequest())
    events = await control.stub.ListEvents(P.ListEventsRequest(page_size=1))
    assert events.events[0].actor == "anonymous"


async def test_state_survives_a_restart(db: Path) -> None:
    c = await start(db)
    await c.stub.Promote(P.PromoteRequest(meta=meta()))
    await c.stub.SetWeight(P.SetWeightRequest(meta=meta(), weight_percent=42))
    await c.close()
    c = await start(db)
    try:
        s = (await c.stub.GetState(P.GetStateRequest())).snapshot
        assert (s.version, s.migration.split_weight_percent) == (3, 42)
        r = await c.stub.Promote(P.PromoteRequest(meta=meta(expected_version=3)))
        assert r.snapshot.version == 4
    finally:
        await c.close()
