"""Fixtures for the control service tests: a real server on 127.0.0.1:0 over a SQLite file in
``tmp_path``, engine probes answered by an ``httpx.MockTransport``, and raw router sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.gen.llmgateway.v1 import control_pb2, control_pb2_grpc
from control_service.app import ControlApp, start_control
from control_service.settings import ControlSettings

OLLAMA = "http://ollama.test"
VLLM = "http://vllm.test"


@dataclass
class Engines:
    """What the fake engines answer to health probes (status code per host)."""

    status: dict[str, int] = field(default_factory=lambda: {"ollama.test": 200, "vllm.test": 200})
    probes: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.probes += 1
        return httpx.Response(self.status[request.url.host])


def make_settings(db: Path, **overrides: Any) -> ControlSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_path": db,
        "grace_period_s": 0.5,
        "ollama_base_url": OLLAMA,
        "vllm_base_url": VLLM,
        "probe_cache_s": 0.0,
        # The behaviour tests talk to the service without credentials; the credential model
        # itself is tested in test_auth.py / test_tls.py / test_hardening_*.py, with it off.
        "insecure": not any(
            overrides.get(k)
            for k in ("auth_token", "reader_token", "router_token", "credentials_file")
        )
        and not overrides.get("tls_client_ca_file"),
    }
    base.update(overrides)
    return ControlSettings(**base)


@dataclass
class Control:
    app: ControlApp
    channel: grpc.aio.Channel
    stub: control_pb2_grpc.ControlServiceAsyncStub
    engines: Engines
    http: httpx.AsyncClient

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    async def close(self) -> None:
        await self.channel.close()
        await self.app.stop(0)
        await self.http.aclose()


async def start(
    db: Path,
    engines: Engines | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> Control:
    """A control service on ``db``; engine probes go to ``engines`` (or ``transport``)."""
    engines = engines or Engines()
    http = httpx.AsyncClient(transport=transport or httpx.MockTransport(engines.handler))
    app = await start_control(make_settings(db, **overrides), http_client=http)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    return Control(app, channel, control_pb2_grpc.ControlServiceStub(channel), engines, http)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "control.db"


@pytest.fixture
async def control(db: Path) -> AsyncIterator[Control]:
    c = await start(db)
    yield c
    await c.close()


def meta(expected_version: int = 0, actor: str = "tester", reason: str = "test") -> Any:
    return control_pb2.ChangeMeta(actor=actor, reason=reason, expected_version=expected_version)


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    """The BadRequest field names of an error status."""
    status = rpc_status.from_call(err)
    out: list[str] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            out.extend(v.field for v in br.field_violations)
    return out


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo detail")


class RawRouter:
    """One router session driven by hand: a hello, then whatever the test sends."""

    def __init__(
        self,
        stub: control_pb2_grpc.ControlServiceAsyncStub,
        router_id: str,
        applied_version: int = 0,
        metadata: tuple[tuple[str, str], ...] = (),
        instance_id: str | None = None,
    ) -> None:
        self.router_id = router_id
        self._outbox: asyncio.Queue[control_pb2.RouterSessionRequest | None] = asyncio.Queue()
        # One instance per id by default: a second RawRouter of an id is its reconnect.
        hello = control_pb2.RouterHello(
            router_id=router_id,
            applied_version=applied_version,
            address=f"{router_id}:50051",
            instance_id=f"{router_id}-instance" if instance_id is None else instance_id,
        )
        self._outbox.put_nowait(control_pb2.RouterSessionRequest(hello=hello))
        self.call = stub.RouterSession(self._requests(), metadata=metadata)

    async def _requests(self) -> AsyncIterator[control_pb2.RouterSessionRequest]:
        while (msg := await self._outbox.get()) is not None:
            yield msg

    async def next_snapshot(self) -> control_pb2.ConfigSnapshot:
        resp = await self.call.read()
        assert isinstance(resp, control_pb2.RouterSessionResponse), resp
        return resp.snapshot

    def send(self, msg: control_pb2.RouterSessionRequest) -> None:
        self._outbox.put_nowait(msg)

    def ack(self, version: int) -> None:
        self.send(control_pb2.RouterSessionRequest(ack=control_pb2.ConfigAck(version=version)))

    def nack(self, version: int, reason: str) -> None:
        self.send(
            control_pb2.RouterSessionRequest(
                nack=control_pb2.ConfigNack(version=version, reason=reason)
            )
        )

    def close(self) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()


async def wait_until(control: Control, predicate: Callable[[], bool], within: float = 5) -> None:
    """Wait on the hub's bookkeeping changes (never a sleep)."""
    async with asyncio.timeout(within):
        await control.app.hub.wait_for(predicate)


async def wait_synced(control: Control, version: int, count: int) -> None:
    """Wait until ``count`` connected routers ACKed ``version``."""
    await wait_until(control, lambda: len(control.app.hub.synced(version)) == count)


# The shared etcd cluster (session-scoped) for the etcd store and leadership tests.
from tests.control.etcd_fixture import etcd_cluster, etcd_prefix  # noqa: E402, F401
