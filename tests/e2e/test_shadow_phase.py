"""The SHADOW phase shadows, end to end: a real control service, a real router and both
simulators. Tried as a new operator would: promote to SHADOW, set the sample rate, send calls;
the pairs reach the control service's shadow report, and ``llmctl status`` says mirroring is on.
Whole episodes: in SPLIT one memOS query never mixes engines on the primary path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, router_pb2, router_pb2_grpc
from llmsim import Flavor, RunningSimulator, SimConfig, start_simulator
from router_service.app import RouterApp, start_router
from tests.clients.test_llmctl_control import llmctl
from tests.control.conftest import Control, meta, start, violations
from tests.router.conftest import make_settings
from tests.router.helpers import collect


@dataclass
class Stack:
    control: Control
    router: RouterApp
    ollama: RunningSimulator
    vllm: RunningSimulator
    channel: grpc.aio.Channel

    @property
    def stub(self) -> router_pb2_grpc.RouterServiceAsyncStub:
        return router_pb2_grpc.RouterServiceStub(self.channel)

    async def converged(self, version: int) -> None:
        await asyncio.wait_for(self.router.config.wait_version(version), 10)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    ollama = await start_simulator(SimConfig(flavor=Flavor.OLLAMA))
    vllm = await start_simulator(SimConfig(flavor=Flavor.VLLM))
    control = await start(tmp_path / "control.db")  # engine probes: the conftest's fakes
    router = await start_router(
        make_settings(
            ollama_base_url=ollama.base_url,
            vllm_base_url=vllm.base_url,
            control_address=f"127.0.0.1:{control.app.port}",
            router_id="r1",
            config_cache_path=tmp_path / "r1.snapshot",
            stats_report_interval_s=0.05,
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{router.port}")
    yield Stack(control, router, ollama, vllm, channel)
    await channel.close()
    await router.stop(0)
    await control.close()
    await ollama.stop()
    await vllm.stop()


async def _pairs(control: Control, want: int) -> control_pb2.GetShadowReportResponse:
    async with asyncio.timeout(10):
        while True:
            report = await control.stub.GetShadowReport(
                control_pb2.GetShadowReportRequest(by_episode=True)
            )
            if sum(g.pairs for g in report.groups) >= want:
                return report
            # The router reports every 50 ms; the service has no push for reports.
            await asyncio.sleep(0.05)


async def test_promote_to_shadow_then_30_calls_are_compared(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    control = stack.control
    snap = (await control.stub.Promote(control_pb2.PromoteRequest(meta=meta()))).snapshot
    assert snap.migration.phase == control_pb2.PHASE_SHADOW
    assert snap.mirroring  # the phase alone turns it on
    assert not snap.flags.shadow_enabled  # the flag is for the other phases
    snap = (
        await control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(),
                flags=control_pb2.Flags(shadow_sample_rate=1.0),
                update_mask=field_mask_pb2.FieldMask(paths=["shadow_sample_rate"]),
            )
        )
    ).snapshot
    await stack.converged(snap.version)
    for i in range(30):
        req = router_pb2.GenerateRequest(prompt=f"q{i}", routing_key=f"query-{i // 5}")
        got = await collect(stack.stub.Generate(req))
        assert got.start.provider == common_pb2.PROVIDER_OLLAMA
    report = await _pairs(control, 30)
    (group,) = report.groups
    assert (group.pairs, group.shadow_success_rate) == (30, 1.0)
    # Six memOS queries of five calls each, every call mirrored.
    assert sorted((e.routing_key, e.pairs) for e in report.episodes) == [
        (f"query-{i}", 5) for i in range(6)
    ]

    assert await llmctl(control.target, "status") == 0
    out = capsys.readouterr().out
    assert "mirroring     on: 100% of episodes to vllm" in out


async def test_split_mirrors_only_with_the_flags_and_never_splits_an_episode(
    stack: Stack,
) -> None:
    control = stack.control
    await control.stub.Promote(control_pb2.PromoteRequest(meta=meta()))
    snap = (
        await control.stub.SetWeight(control_pb2.SetWeightRequest(meta=meta(), weight_percent=50))
    ).snapshot
    assert not snap.mirroring  # SPLIT without the flags
    await stack.converged(snap.version)
    tasks = [common_pb2.TASK_ANALYSIS, common_pb2.TASK_SYNTHESIS, common_pb2.TASK_REFLECTION]
    engines: dict[str, set[int]] = {}
    for q in range(16):
        for task in tasks:
            req = router_pb2.GenerateRequest(prompt="x", routing_key=f"episode-{q}", task=task)
            got = await collect(stack.stub.Generate(req))
            engines.setdefault(f"episode-{q}", set()).add(got.start.provider)
    assert all(len(e) == 1 for e in engines.values())  # one engine per episode
    assert {p for e in engines.values() for p in e} == {
        common_pb2.PROVIDER_OLLAMA,
        common_pb2.PROVIDER_VLLM,
    }
    assert stack.router.shadow is not None
    assert stack.router.shadow.counters.mirrored == 0

    flags = control_pb2.Flags(shadow_enabled=True, shadow_during_split=True)
    snap = (
        await control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(),
                flags=flags,
                update_mask=field_mask_pb2.FieldMask(
                    paths=["shadow_enabled", "shadow_during_split"]
                ),
            )
        )
    ).snapshot
    assert snap.mirroring
    await stack.converged(snap.version)
    assert stack.router.config.current.shadow_active


async def test_the_judge_may_not_be_an_arm(stack: Stack) -> None:
    """Refused at config time, naming the field; a judge outside the arms reaches the router."""
    control = stack.control
    mask = field_mask_pb2.FieldMask(paths=["shadow_judge"])
    arm = control_pb2.ShadowJudge(
        enabled=True, model="qwen3:8b", provider=common_pb2.PROVIDER_OLLAMA
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(), flags=control_pb2.Flags(shadow_judge=arm), update_mask=mask
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(info.value) == ["flags.shadow_judge.model"]
    ok = control_pb2.ShadowJudge(
        enabled=True,
        model="llama3.3:70b",
        provider=common_pb2.PROVIDER_OLLAMA,
        max_calls_per_hour=10,
        swap_check_rate=0.2,
    )
    snap = (
        await control.stub.UpdateFlags(
            control_pb2.UpdateFlagsRequest(
                meta=meta(), flags=control_pb2.Flags(shadow_judge=ok), update_mask=mask
            )
        )
    ).snapshot
    await stack.converged(snap.version)
    judge = stack.router.config.current.judge
    assert (judge.enabled, judge.model, judge.provider) == (True, "llama3.3:70b", "ollama")
    assert (judge.max_calls_per_hour, judge.swap_check_rate) == (10, 0.2)
