"""The router's config subscriber against a fake control service on port 0."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2
from router_service.config.subscriber import SubscriberState
from tests.router.conftest import Harness, start_harness
from tests.router.fake_control import make_snapshot, new_fake_control, start_fake_control
from tests.router.helpers import collect


async def _state(h: Harness, state: SubscriberState) -> None:
    assert h.app.subscriber is not None
    await asyncio.wait_for(h.app.subscriber.wait_state(state), 10)


async def _router(tmp_path: Path, port: int, **extra: object) -> Harness:
    settings: dict[str, object] = {
        "control_address": f"127.0.0.1:{port}",
        "router_id": "r1",
        "config_cache_path": tmp_path / "r1.snapshot",
        "stats_report_interval_s": 0.05,
        "config_stale_grace_s": 60,
    }
    settings.update(extra)
    return await start_harness(**settings)


async def _close(h: Harness) -> None:
    await h.channel.close()
    await h.app.stop(0)


async def _provider_of(h: Harness, key: str = "q1") -> int:
    got = await collect(h.stub.Generate(router_pb2.GenerateRequest(prompt="x", routing_key=key)))
    return got.start.provider


async def test_applies_acks_and_persists_a_snapshot(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await _router(tmp_path, port)
    try:
        await fake.wait_for(lambda: len(fake.hellos) == 1)
        assert (fake.hellos[0].router_id, fake.hellos[0].applied_version) == ("r1", 0)
        assert h.app.subscriber is not None
        assert h.app.subscriber.state is SubscriberState.CONNECTING  # no config yet: bootstrap
        assert await _provider_of(h) == common_pb2.PROVIDER_OLLAMA
        await fake.outbox.put(make_snapshot(1, vllm_percent=100, phase=control_pb2.PHASE_PRIMARY))
        await fake.wait_for(lambda: fake.acks == [1])
        await _state(h, SubscriberState.SYNCED)
        assert h.app.config.current.version == 1
        assert await _provider_of(h) == common_pb2.PROVIDER_VLLM
        await h.app.subscriber.flush()  # written behind the ACK
        assert (tmp_path / "r1.snapshot").exists()
    finally:
        await _close(h)
        await server.stop(0)


async def test_nack_keeps_the_previous_config(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await _router(tmp_path, port)
    try:
        await fake.outbox.put(make_snapshot(1, vllm_percent=100))
        await fake.wait_for(lambda: fake.acks == [1])
        bad = make_snapshot(2)
        del bad.catalog.task_models[:]
        await fake.outbox.put(bad)
        await fake.wait_for(lambda: len(fake.nacks) == 1)
        assert fake.nacks[0].version == 2
        assert "catalog.task_models" in fake.nacks[0].reason
        assert h.app.config.current.version == 1
        assert await _provider_of(h) == common_pb2.PROVIDER_VLLM
        assert h.app.subscriber is not None
        assert "v2" in h.app.subscriber.last_nack
    finally:
        await _close(h)
        await server.stop(0)


async def test_stats_reports_are_tagged_with_the_version(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await _router(tmp_path, port)
    try:
        await fake.outbox.put(make_snapshot(3, vllm_percent=100))
        await fake.wait_for(lambda: fake.acks == [3])
        for key in ("a", "b", "c"):
            await _provider_of(h, key)
        await fake.wait_for(lambda: sum(s.requests for r in fake.reports for s in r.stats) >= 3)
        stats = [s for r in fake.reports for s in r.stats]
        assert all(r.config_version == 3 for r in fake.reports)
        assert {s.provider for s in stats} == {common_pb2.PROVIDER_VLLM}
        assert {s.task for s in stats} == {common_pb2.TASK_ANALYSIS}
        assert sum(sum(s.total_ms.counts) for s in stats) == 3
        assert all(s.errors == 0 for s in stats)
    finally:
        await _close(h)
        await server.stop(0)


async def test_survives_control_outage_and_restart_from_disk(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await _router(tmp_path, port)
    await fake.outbox.put(make_snapshot(5, vllm_percent=100))
    await fake.wait_for(lambda: fake.acks == [5])
    await server.stop(0)  # control service gone
    # Hold the port (bound, not listening: connections are refused) so that no server started
    # meanwhile is given it, and the control service can come back on it.
    placeholder = socket.socket()
    placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    placeholder.bind(("127.0.0.1", port))
    await _state(h, SubscriberState.STALE)
    assert await _provider_of(h) == common_pb2.PROVIDER_VLLM  # last good config keeps serving
    await _close(h)

    # A restarted router with no control service serves the persisted snapshot.
    h2 = await _router(tmp_path, port)
    try:
        assert h2.app.config.current.version == 5
        assert await _provider_of(h2) == common_pb2.PROVIDER_VLLM
        # The control service comes back on the same port: the router resyncs.
        placeholder.close()
        fake2 = new_fake_control()
        server2, _ = await start_fake_control(fake2, port)
        try:
            await fake2.wait_for(lambda: len(fake2.hellos) >= 1, within=20)
            assert fake2.hellos[-1].applied_version == 5
            await fake2.outbox.put(make_snapshot(6))
            await fake2.wait_for(lambda: 6 in fake2.acks)
            assert await _provider_of(h2) == common_pb2.PROVIDER_OLLAMA
            await _state(h2, SubscriberState.SYNCED)
        finally:
            await server2.stop(0)
    finally:
        await _close(h2)


async def test_stale_turns_to_error_after_the_grace_period(tmp_path: Path) -> None:
    fake = new_fake_control()
    server, port = await start_fake_control(fake)
    h = await _router(tmp_path, port, config_stale_grace_s=0.2)
    try:
        await fake.outbox.put(make_snapshot(1))
        await fake.wait_for(lambda: fake.acks == [1])
        await server.stop(0)
        await _state(h, SubscriberState.ERROR)
        assert await _provider_of(h) == common_pb2.PROVIDER_OLLAMA  # still serving v1
    finally:
        await _close(h)
