"""Logging set-up: httpx quiet at INFO; the router's engine probes at DEBUG but state changes."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from llmcore.logs import configure_logging
from router_service.engine_health import EngineHealth
from router_service.errors import ErrorKind, RouterError
from router_service.providers import Provider


@pytest.fixture
def _restore_levels() -> object:
    saved = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    yield None
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("_restore_levels")
def test_http_libraries_at_warning_unless_debug() -> None:
    configure_logging("info")
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING
    configure_logging("DEBUG")
    assert logging.getLogger("httpx").level == logging.DEBUG


class _Engine:
    def __init__(self) -> None:
        self.up = True

    async def probe(self) -> None:
        if not self.up:
            raise RouterError(ErrorKind.LLM_UNAVAILABLE, "connection refused", provider="vllm")


async def test_steady_probes_log_at_debug_a_change_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = _Engine()
    health = EngineHealth({"vllm": cast(Provider, engine)})
    caplog.set_level(logging.DEBUG, logger="router_service.engine_health")
    for _ in range(3):
        await health.probe_all()
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 3
    caplog.clear()
    engine.up = False
    await health.probe_all()
    await health.probe_all()
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.INFO, logging.DEBUG]  # the change, then the steady state again
    assert caplog.records[0].getMessage() == "engine vllm is down connection refused"
    assert caplog.records[1].getMessage().startswith("engine vllm probe: down in ")
    assert health.last["vllm"].healthy is False


async def test_an_engine_down_from_the_start_is_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = _Engine()
    engine.up = False
    health = EngineHealth({"vllm": cast(Provider, engine)})
    caplog.set_level(logging.DEBUG, logger="router_service.engine_health")
    await health.probe_all()
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "engine vllm is down" in caplog.records[0].getMessage()
