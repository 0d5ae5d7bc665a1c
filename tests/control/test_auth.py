"""Bearer tokens: mutating RPCs need the operator token, sessions the router token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from clients.gen.llmgateway.v1 import control_pb2
from control_service.auth import MUTATING_METHODS, SESSION_METHOD, AuthResult, check_bearer
from tests.control.conftest import Control, RawRouter, meta, start

P = control_pb2
OPERATOR = (("authorization", "Bearer op-token"),)
ROUTER = (("authorization", "Bearer router-token"),)


@pytest.fixture
async def secured(db: Path) -> AsyncIterator[Control]:
    c = await start(db, auth_token="op-token", router_token="router-token")
    yield c
    await c.close()


def test_mutating_methods_are_found_from_the_descriptor() -> None:
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
    }
    assert SESSION_METHOD.endswith("/RouterSession")


def test_check_bearer() -> None:
    assert check_bearer(None, "t") is AuthResult.MISSING
    assert check_bearer([("authorization", "Basic dA==")], "t") is AuthResult.MISSING
    assert check_bearer([("authorization", "Bearer")], "t") is AuthResult.MISSING
    assert check_bearer([("authorization", "bearer t")], "t") is AuthResult.OK
    assert check_bearer([("Authorization", b"Bearer t")], "t") is AuthResult.OK
    assert check_bearer([("authorization", "Bearer u")], "t") is AuthResult.WRONG


async def test_mutations_need_the_operator_token(secured: Control) -> None:
    stub = secured.stub
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Promote(P.PromoteRequest(meta=meta()))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Promote(
            P.PromoteRequest(meta=meta()), metadata=(("authorization", "Bearer nope"),)
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Abort(P.AbortRequest(meta=meta()), metadata=ROUTER)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    r = await stub.Promote(P.PromoteRequest(meta=meta()), metadata=OPERATOR)
    assert r.snapshot.version == 2
    # Reads stay open.
    assert (await stub.GetState(P.GetStateRequest())).snapshot.version == 2
    assert len((await stub.ListEvents(P.ListEventsRequest())).events) == 2
    await stub.GetHealth(P.GetHealthRequest())


async def test_sessions_need_the_router_token(secured: Control) -> None:
    bare = RawRouter(secured.stub, "r1")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await bare.next_snapshot()
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = RawRouter(secured.stub, "r1", metadata=OPERATOR)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await wrong.next_snapshot()
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    ok = RawRouter(secured.stub, "r1", metadata=ROUTER)
    assert (await ok.next_snapshot()).version == 1
    ok.close()


async def test_without_tokens_everything_is_open(control: Control) -> None:
    assert (await control.stub.Promote(P.PromoteRequest(meta=meta()))).snapshot.version == 2
    router = RawRouter(control.stub, "r1")
    assert (await router.next_snapshot()).version == 2
    router.close()
