"""The control service's start-up and shutdown: a start that fails at its last step (the
metrics endpoint) stops everything already started, and a stop drains through gRPC health."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from control_service.app import SERVICE_NAME, start_control
from control_service.store import SqliteStore
from tests._net import can_bind, free_port, port_in_use
from tests.control.conftest import Engines, make_settings


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with port_in_use() as port:
        yield port


async def test_a_failed_metrics_start_stops_everything_already_started(
    tmp_path: Path, busy_port: int
) -> None:
    before = asyncio.all_tasks()
    grpc_port = free_port()
    store = SqliteStore(tmp_path / "control.db")
    settings = make_settings(
        tmp_path / "control.db",
        port=grpc_port,
        metrics_port=busy_port,
        rollback_enabled=True,  # its loop task is running when the metrics step fails
        gpu_backend="fake",
    )
    with pytest.raises(OSError, match=r"(?i)address already in use"):
        await start_control(settings, store=store)
    leftover = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert leftover == set(), [t.get_name() for t in leftover]
    assert can_bind(grpc_port), "the gRPC server still holds its port"
    assert store._closed  # the store it was given is closed too, as on stop


async def test_a_failing_store_closes_the_store_and_starts_nothing(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    (tmp_path / "control.db").mkdir()  # a directory where the SQLite file should be
    store = SqliteStore(tmp_path / "control.db")
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        await start_control(make_settings(tmp_path / "control.db"), store=store)
    assert store._closed
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


async def test_stop_turns_health_not_serving_first(tmp_path: Path) -> None:
    engines = Engines()
    http = httpx.AsyncClient(transport=httpx.MockTransport(engines.handler))
    app = await start_control(make_settings(tmp_path / "control.db"), http_client=http)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        first = await watch.read()
        assert isinstance(first, health_pb2.HealthCheckResponse)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(app.stop(0.5))
        update = await asyncio.wait_for(watch.read(), 5)
        assert isinstance(update, health_pb2.HealthCheckResponse)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.wait_for(stopping, 5)
        assert not http.is_closed  # the caller's client is the caller's to close
    finally:
        await channel.close()
        await app.stop(0)
        await http.aclose()
