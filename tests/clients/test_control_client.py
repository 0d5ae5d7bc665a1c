"""The typed control client: it covers every ControlService RPC of the proto, takes one call
path, and raises the control service's errors as their own types (against a real service on
127.0.0.1:0)."""

from __future__ import annotations

import inspect
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from clients.llm import (
    CallOptions,
    ChangeArgs,
    ControlClient,
    ControlError,
    ControlUnavailable,
    IllegalTransition,
    InvalidArgument,
    NotAuthorised,
    PreconditionFailed,
    RouterError,
    VersionConflict,
)
from clients.llm._control_client import ROUTER_ONLY_RPCS, SERVICE
from tests.clients.test_llmctl_control import TOKEN, Control, start

OPERATOR_RPCS = [m for m in SERVICE.methods if m.name not in ROUTER_ONLY_RPCS]


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("method", OPERATOR_RPCS, ids=lambda m: m.name)
def test_every_operator_rpc_has_a_method(method: MethodDescriptor) -> None:
    name = _snake_case(method.name)
    assert callable(getattr(ControlClient, name, None)), f"ControlClient lacks {name}()"


def test_the_service_has_the_rpcs_the_client_wraps() -> None:
    # A new RPC fails here until the client wraps it (and this list names it).
    assert [m.name for m in SERVICE.methods] == [
        "RouterSession",
        "GetState",
        "Promote",
        "SetWeight",
        "Pause",
        "Resume",
        "Abort",
        "Retry",
        "Undo",
        "UpdateFlags",
        "ListEvents",
        "GetHealth",
        "GetShadowReport",
        "EvaluateGoNoGo",
        "GetGpuStatus",
        "WatchGpuStatus",
        "SelectModel",
        "SetTaskModel",
        "MeasureEmbeddingParity",
        "ListEngines",
        "DrainReplica",
    ]


@pytest.mark.parametrize(
    "method", [m for m in OPERATOR_RPCS if "meta" in m.input_type.fields_by_name], ids=str
)
def test_every_mutating_rpc_takes_the_change_arguments(method: MethodDescriptor) -> None:
    name = _snake_case(method.name)
    params = inspect.signature(getattr(ControlClient, name)).parameters.values()
    var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert [str(p.annotation) for p in var_kw] == ["Unpack[ChangeArgs]"], name
    assert set(ChangeArgs.__annotations__) == {"actor", "reason", "expected_version", "options"}


async def test_call_refuses_a_request_of_another_rpc() -> None:
    client = ControlClient("127.0.0.1:1")
    try:
        with pytest.raises(TypeError, match="Promote takes PromoteRequest, not PauseRequest"):
            await client.call("Promote", control_pb2.PauseRequest())
    finally:
        await client.close()


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Control]:
    c = await start(tmp_path / "control.db")
    yield c
    await c.close()


async def test_control_errors_are_their_own_types(control: Control) -> None:
    async with ControlClient(control.target) as client:
        with pytest.raises(IllegalTransition) as illegal:
            await client.retry()
        assert illegal.value.status_code is grpc.StatusCode.FAILED_PRECONDITION
        assert illegal.value.reason == "ILLEGAL_TRANSITION"

        await client.promote(expected_version=1)
        with pytest.raises(VersionConflict) as conflict:
            await client.pause(expected_version=1)
        assert (conflict.value.expected_version, conflict.value.current_version) == (1, 2)
        assert conflict.value.status_code is grpc.StatusCode.ABORTED

        with pytest.raises(InvalidArgument) as invalid:
            await client.set_weight(150)
        assert invalid.value.field_violations
        assert invalid.value.field_violations[0][0] == "weight_percent"

        # No GPU telemetry here and no budget: valid, but the state refuses it.
        with pytest.raises(PreconditionFailed) as precondition:
            await client.select_model(common_pb2.TASK_SYNTHESIS)
        assert precondition.value.reason == "GPU_TELEMETRY_UNAVAILABLE"
        assert precondition.value.details["field"] == "budget_bytes"

        for error in (illegal.value, conflict.value, invalid.value, precondition.value):
            assert isinstance(error, ControlError)
            assert isinstance(error, RouterError)  # what existing callers catch


async def test_not_authorised_and_a_per_call_token(tmp_path: Path) -> None:
    secured = await start(tmp_path / "control.db", auth_token=TOKEN)
    try:
        async with ControlClient(secured.target) as anonymous:
            with pytest.raises(NotAuthorised) as missing:
                await anonymous.promote()
            assert missing.value.status_code is grpc.StatusCode.UNAUTHENTICATED
        async with ControlClient(secured.target, token="wrong") as wrong:
            with pytest.raises(NotAuthorised) as denied:
                await wrong.promote()
            assert denied.value.status_code is grpc.StatusCode.PERMISSION_DENIED
            # A call's own authorization replaces the client's token (not sent twice).
            good = CallOptions(metadata=[("authorization", f"Bearer {TOKEN}")])
            snapshot = await wrong.promote(reason="per-call token", options=good)
            assert snapshot.migration.phase == control_pb2.PHASE_SHADOW
    finally:
        await secured.close()


async def test_an_unreachable_service_is_control_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with ControlClient(f"127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(ControlUnavailable) as exc:
            await client.get_state()
    assert exc.value.status_code is grpc.StatusCode.UNAVAILABLE
