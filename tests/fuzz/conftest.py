"""The fuzz suite's servers: a router (fake engines) and a control service (insecure, so every
request reaches its handler), both real grpc.aio servers on port 0, on an event loop of their
own in a thread; the tests call them with plain synchronous channels, so Hypothesis drives
ordinary functions. Hypothesis profiles: ``ci`` (the default, a few seconds in ``make test``)
and ``fuzz`` (``make fuzz``: many more examples)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, settings

T = TypeVar("T")

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "fuzz",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class Servers:
    loop: asyncio.AbstractEventLoop
    router: grpc.Channel
    control: grpc.Channel

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    from tests.control.conftest import start
    from tests.router.conftest import start_harness

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-servers", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    db: Path = tmp_path_factory.mktemp("fuzz") / "control.db"
    harness = run(start_harness())
    control = run(start(db, gpu_backend="fake"))
    router_channel = grpc.insecure_channel(f"127.0.0.1:{harness.app.port}")
    control_channel = grpc.insecure_channel(control.target)
    try:
        yield Servers(loop, router_channel, control_channel)
    finally:
        router_channel.close()
        control_channel.close()
        run(harness.channel.close())
        run(harness.app.stop(0))
        run(control.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
