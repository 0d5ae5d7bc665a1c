"""deploy/healthcheck.py (the image's ``llmgateway-healthcheck``) against real servers: the
router and control service on port 0, and a simulator for the HTTP form."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from control_service.app import SERVICE_NAME as CONTROL_SERVICE
from control_service.app import start_control
from control_service.settings import ControlSettings
from llmsim import Flavor, SimConfig, start_simulator
from router_service.app import SERVICE_NAME as ROUTER_SERVICE
from tests.deploy._support import HEALTHCHECK_SCRIPT
from tests.router.conftest import Harness, start_harness


@dataclass
class Result:
    code: int
    out: str
    err: str


async def healthcheck(*args: str) -> Result:
    """Runs the script as Docker would, while this test's servers keep serving."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK_SCRIPT),
        "--timeout",
        "2",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def router() -> AsyncIterator[Harness]:
    h = await start_harness()
    yield h
    await h.channel.close()
    await h.app.stop(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_router_is_healthy(router: Harness) -> None:
    result = await healthcheck("grpc", f"127.0.0.1:{router.app.port}", ROUTER_SERVICE)
    assert result.code == 0, result.err
    assert "SERVING" in result.out


async def test_unknown_service_is_unhealthy(router: Harness) -> None:
    result = await healthcheck("grpc", f"127.0.0.1:{router.app.port}", "llmgateway.v1.Nope")
    assert result.code == 1
    assert "NOT_FOUND" in result.err


async def test_draining_router_is_unhealthy(router: Harness) -> None:
    await router.app.health.enter_graceful_shutdown()
    result = await healthcheck("grpc", f"127.0.0.1:{router.app.port}", ROUTER_SERVICE)
    assert result.code == 1
    assert "NOT_SERVING" in result.err


async def test_control_service_is_healthy(tmp_path: Path) -> None:
    # The gRPC health service stays open whatever the credentials (probes carry none).
    settings = ControlSettings(
        host="127.0.0.1",
        port=0,
        db_path=tmp_path / "control.db",
        auth_token="operator-token-0123456789",
    )
    app = await start_control(settings)
    try:
        result = await healthcheck("grpc", f"127.0.0.1:{app.port}", CONTROL_SERVICE)
    finally:
        await app.stop(0)
    assert result.code == 0, result.err


async def test_nothing_listening_is_unhealthy() -> None:
    result = await healthcheck("grpc", f"127.0.0.1:{free_port()}", ROUTER_SERVICE)
    assert result.code == 1
    assert "UNAVAILABLE" in result.err


@pytest.mark.parametrize(
    ("flavor", "path"), [(Flavor.OLLAMA, "/api/version"), (Flavor.VLLM, "/health")]
)
async def test_http_form_against_the_simulator(flavor: Flavor, path: str) -> None:
    sim = await start_simulator(SimConfig(flavor=flavor, host="127.0.0.1", port=0))
    try:
        ok = await healthcheck("http", f"http://127.0.0.1:{sim.port}{path}")
        missing = await healthcheck("http", f"http://127.0.0.1:{sim.port}/no-such-path")
    finally:
        await sim.stop()
    assert ok.code == 0, ok.err
    assert missing.code == 1
    assert "HTTP 404" in missing.err


async def test_http_form_when_nothing_listens() -> None:
    result = await healthcheck("http", f"http://127.0.0.1:{free_port()}/health")
    assert result.code == 1


async def test_bad_usage_is_not_healthy() -> None:
    assert (await healthcheck("ping")).code == 2
    assert (await healthcheck("http", "ftp://example.invalid/")).code == 1
