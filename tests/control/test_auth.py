"""Credentials and authorisation: routers, operators and readers each have their own; every
ControlService call needs one unless ``insecure`` is on (issue 21)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2
from control_service.authz import (
    MUTATING_METHODS,
    OPERATOR_METHODS,
    SESSION_METHOD,
    Role,
    bearer_token,
    build_credentials,
    load_credentials_file,
)
from tests.control.conftest import Control, RawRouter, meta, start

P = control_pb2
OP_TOKEN, READ_TOKEN, ROUTER_TOKEN = (
    "op-token-0123456789",
    "read-token-0123456",
    "fleet-token-01234",
)
OPERATOR = (("authorization", f"Bearer {OP_TOKEN}"),)
READER = (("authorization", f"Bearer {READ_TOKEN}"),)
ROUTER = (("authorization", f"Bearer {ROUTER_TOKEN}"),)


@pytest.fixture
async def secured(db: Path) -> AsyncIterator[Control]:
    c = await start(db, auth_token=OP_TOKEN, reader_token=READ_TOKEN, router_token=ROUTER_TOKEN)
    yield c
    await c.close()


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_method_roles_come_from_the_descriptor() -> None:
    names = {m.rsplit("/", 1)[1] for m in MUTATING_METHODS}
    assert names == {
        "Promote",
        "SetWeight",
        "Pause",
        "Resume",
        "Abort",
        "Retry",
        "Undo",
        "UpdateFlags",
        "SetTaskModel",
        "MeasureEmbeddingParity",  # operator-only: it sends the corpus, and it is audited
        "DrainReplica",
    }
    assert {m.rsplit("/", 1)[1] for m in OPERATOR_METHODS - MUTATING_METHODS} == {
        "EvaluateGoNoGo",
        "GetShadowReport",
    }
    assert SESSION_METHOD.endswith("/RouterSession")


def test_bearer_token() -> None:
    assert bearer_token(None) is None
    assert bearer_token([("authorization", "Basic dA==")]) is None
    assert bearer_token([("authorization", "Bearer")]) is None
    assert bearer_token([("authorization", "bearer t")]) == "t"
    assert bearer_token([("Authorization", b"Bearer t")]) == "t"


def test_one_token_for_two_roles_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        build_credentials(operator_token="same-token-0123456", reader_token="same-token-0123456")


def test_credentials_file(tmp_path: Path) -> None:
    f = tmp_path / "creds.yaml"
    f.write_text(
        "operators: {alice: alice-token-0123456}\n"
        "readers: {grafana: grafana-token-012345}\n"
        "routers: {router-1: router-1-token-01234}\n"
    )
    tokens = load_credentials_file(f)
    assert tokens["alice-token-0123456"].identity == "operator:alice"
    assert tokens["grafana-token-012345"].role is Role.READER
    assert tokens["router-1-token-01234"].may_claim("router-1")
    assert not tokens["router-1-token-01234"].may_claim("router-2")
    f.write_text("operators: {alice: short}\n")
    with pytest.raises(ValueError, match="16 or more"):
        load_credentials_file(f)
    f.write_text("routers: {'bad\\nid': router-token-0123456}\n")
    with pytest.raises(ValueError, match="not a valid name"):
        load_credentials_file(f)


async def test_mutations_need_the_operator_token(secured: Control) -> None:
    stub = secured.stub
    assert await code_of(stub.Promote(P.PromoteRequest(meta=meta()))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    bad = (("authorization", "Bearer nope"),)
    assert await code_of(stub.Promote(P.PromoteRequest(meta=meta()), metadata=bad)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    for creds in (ROUTER, READER):
        assert await code_of(stub.Abort(P.AbortRequest(meta=meta()), metadata=creds)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    r = await stub.Promote(P.PromoteRequest(meta=meta()), metadata=OPERATOR)
    assert r.snapshot.version == 2


async def test_unauthenticated_reads_are_refused(secured: Control) -> None:
    """The audit's case: GetState, ListEvents, GetHealth and GetShadowReport answered anyone."""
    stub = secured.stub
    reads: list[tuple[str, Any]] = [
        ("GetState", P.GetStateRequest()),
        ("ListEvents", P.ListEventsRequest()),
        ("GetHealth", P.GetHealthRequest()),
        ("GetGpuStatus", P.GetGpuStatusRequest()),
        ("SelectModel", P.SelectModelRequest()),
    ]
    for name, request in reads:
        method = getattr(stub, name)
        assert await code_of(method(request)) == grpc.StatusCode.UNAUTHENTICATED, name
        assert await code_of(method(request, metadata=ROUTER)) == (
            grpc.StatusCode.PERMISSION_DENIED
        ), name
        assert await code_of(method(request, metadata=READER)) != grpc.StatusCode.UNAUTHENTICATED
        assert await code_of(method(request, metadata=READER)) != (
            grpc.StatusCode.PERMISSION_DENIED
        ), name
        assert await code_of(method(request, metadata=OPERATOR)) not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ), name
    # The shadow report may hold captured prompts and answers: operators only.
    report = P.GetShadowReportRequest()
    assert await code_of(stub.GetShadowReport(report)) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(stub.GetShadowReport(report, metadata=READER)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(stub.GetShadowReport(report, metadata=OPERATOR)) == grpc.StatusCode.OK


async def test_router_session_is_refused_when_only_the_operator_token_is_set(db: Path) -> None:
    """The audit's case: with only an operator token an unauthenticated client registered as
    a router and got the whole config."""
    c = await start(db, auth_token=OP_TOKEN)
    try:
        bare = RawRouter(c.stub, "r1")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await bare.next_snapshot()
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
        operator = RawRouter(c.stub, "r1", metadata=OPERATOR)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await operator.next_snapshot()
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert c.app.hub.routers() == []
    finally:
        await c.close()


async def test_sessions_need_the_router_token(secured: Control) -> None:
    wrong = RawRouter(secured.stub, "r1", metadata=OPERATOR)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await wrong.next_snapshot()
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ok = RawRouter(secured.stub, "r1", metadata=ROUTER)
    assert (await ok.next_snapshot()).version == 1
    ok.close()


async def test_a_router_token_binds_its_router_id(db: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text("routers: {r1: r1-token-0123456789, r2: r2-token-0123456789}\n")
    c = await start(db, credentials_file=creds)
    try:
        as_r1 = (("authorization", "Bearer r1-token-0123456789"),)
        forged = RawRouter(c.stub, "r2", metadata=as_r1)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await forged.next_snapshot()
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "r2" in (exc.value.details() or "")
        own = RawRouter(c.stub, "r1", metadata=as_r1)
        assert (await own.next_snapshot()).version == 1
        own.close()
    finally:
        await c.close()


async def test_audit_actor_is_the_credentials_identity(db: Path, tmp_path: Path) -> None:
    """The audit's case: the actor was free text chosen by the client."""
    creds = tmp_path / "creds.yaml"
    creds.write_text("operators: {alice: alice-token-0123456}\n")
    c = await start(db, credentials_file=creds)
    try:
        alice = (("authorization", "Bearer alice-token-0123456"),)
        await c.stub.Promote(P.PromoteRequest(meta=meta(actor="bob")), metadata=alice)
        events = (await c.stub.ListEvents(P.ListEventsRequest(), metadata=alice)).events
        assert events[0].actor == "operator:alice"
        assert json.loads(events[0].after_json)["evidence"]["actor_note"] == "bob"
    finally:
        await c.close()


async def test_no_credentials_refuses_to_start_unless_insecure(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="no credentials configured"):
        await start(db, insecure=False)
    with caplog.at_level(logging.WARNING, logger="control_service.app"):
        c = await start(db, insecure=True)
    try:
        assert any("INSECURE" in r.getMessage() for r in caplog.records)
        # Insecure: everything is open, the client's name is the actor.
        assert (await c.stub.Promote(P.PromoteRequest(meta=meta()))).snapshot.version == 2
        events = (await c.stub.ListEvents(P.ListEventsRequest())).events
        assert events[0].actor == "tester"
        router = RawRouter(c.stub, "r1")
        assert (await router.next_snapshot()).version == 2
        router.close()
    finally:
        await c.close()
