"""Fixtures for the client library and llmctl tests: a fake router on a real port-0 server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from clients.llm import RouterClient
from clients.llm.testing import FakeRouter, FakeRouterServicer


@pytest.fixture
async def fake_router() -> AsyncIterator[FakeRouter]:
    async with FakeRouter() as router:
        yield router


@pytest.fixture
def servicer(fake_router: FakeRouter) -> FakeRouterServicer:
    return fake_router.servicer


@pytest.fixture
async def client(fake_router: FakeRouter) -> AsyncIterator[RouterClient]:
    async with RouterClient(fake_router.target, timeout=10.0) as router_client:
        yield router_client
