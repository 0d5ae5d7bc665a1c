"""Shared by the shadow tests: configs in shadow mode, mirror waits and timing summaries."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable

from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from router_service.config import RoutingConfig, from_snapshot
from router_service.request_stats import Drained, ShadowRecord
from router_service.shadow import ShadowMirror
from tests.router.conftest import Harness
from tests.router.fake_control import make_snapshot


def shadow_snapshot(
    rate: float = 1.0,
    *,
    version: int = 1,
    phase: control_pb2.Phase.ValueType = control_pb2.PHASE_SHADOW,
    vllm_percent: float = 0.0,
    during_split: bool = False,
    capture: bool = False,
    embeddings: bool = False,
) -> control_pb2.ConfigSnapshot:
    snap = make_snapshot(version, vllm_percent=vllm_percent, phase=phase)
    snap.flags.shadow_enabled = True
    snap.flags.shadow_provider = common_pb2.PROVIDER_VLLM
    snap.flags.shadow_sample_rate = rate
    snap.flags.shadow_during_split = during_split
    snap.flags.shadow_capture_content = capture
    snap.flags.shadow_compare_embeddings = embeddings
    return snap


def shadow_config(
    rate: float = 1.0, *, capture: bool = False, embeddings: bool = False
) -> RoutingConfig:
    """SHADOW phase at ``rate`` (Ollama answers, vLLM shadows)."""
    return from_snapshot(shadow_snapshot(rate, capture=capture, embeddings=embeddings))


async def wait_mirror(
    mirror: ShadowMirror, predicate: Callable[[], bool], within: float = 10
) -> None:
    """Wait on the mirror's own change notifications (never a sleep)."""
    async with asyncio.timeout(within):
        await mirror.wait_for(predicate)


def mirror_of(app_holder: Harness) -> ShadowMirror:
    assert app_holder.app.shadow is not None
    return app_holder.app.shadow


def pairs(drained: Drained) -> list[ShadowRecord]:
    return [r for r in drained.shadow_comparisons if not r.dropped]


def p50(values: list[float]) -> float:
    return statistics.median(values)
