"""The control service's Prometheus metrics on its own ``CollectorRegistry``: state read at
scrape time (config version, phase, vLLM share, routers, GPU telemetry, vLLM's own figures)
plus a counter of rollback decisions fed by the rollback loop's observer hook."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import get_args

import httpx
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_service.controller import Controller
from control_service.gpu import GpuMonitor
from control_service.hub import Hub, RouterView
from control_service.rollback import decide as dec
from control_service.rollback.rules import Outcome
from control_service.state import RollbackRule
from control_service.telemetry.vllm_metrics import VllmFigures, parse_vllm_metrics

log = logging.getLogger(__name__)


class VllmMetricsReader:
    """Reads vLLM's ``/metrics`` every ``interval_s``; ``latest`` is None until one read works."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, interval_s: float) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/metrics"
        self.interval_s = interval_s
        self.latest: VllmFigures | None = None
        self.up = False
        self._task: asyncio.Task[None] | None = None

    async def read_once(self) -> None:
        try:
            resp = await self._client.get(self._url, timeout=2.0)
            resp.raise_for_status()
            self.latest = parse_vllm_metrics(resp.text)
            self.up = True
        except (httpx.HTTPError, ValueError) as exc:
            self.up = False
            log.debug("vLLM metrics unreadable at %s: %s", self._url, exc)

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="vllm-metrics-reader")

    async def _run(self) -> None:
        while True:
            await self.read_once()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class RollbackObserver:
    """A ``RollbackLoop`` observer: counts decisions by rule and outcome, and traces the ones
    that act (a span per decision that is not NONE)."""

    def __init__(self, registry: CollectorRegistry, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self.rules = Counter(
            "llm_control_rollback_rule_evaluations",
            "Rollback rule evaluations by rule and outcome (pass, fail, inconclusive).",
            ("rule", "outcome"),
            registry=registry,
        )
        self.decisions = Counter(
            "llm_control_rollback_decisions",
            "Rollback loop decisions by action (none, rollback, freeze, alert...).",
            ("action",),
            registry=registry,
        )
        # Every series from the start (at zero), so rates and dashboards see them at once.
        for action in dec.Action:
            self.decisions.labels(action.value)
        for rule in get_args(RollbackRule):
            for outcome in Outcome:
                self.rules.labels(rule, outcome.value)

    def __call__(self, d: dec.Decision) -> None:
        self.decisions.labels(d.action.value).inc()
        for r in d.results:
            self.rules.labels(str(r.rule), r.outcome.value).inc()
        if d.action is dec.Action.NONE:
            return
        with self._tracer.start_as_current_span(
            f"rollback.decision {d.action.value}",
            attributes={
                "llmgateway.rollback.action": d.action.value,
                "llmgateway.rollback.reason": d.reason,
                "llmgateway.rollback.rules": [str(r.rule) for r in d.acting],
                "llmgateway.rollback.dry_run_rules": [str(r.rule) for r in d.dry_run],
            },
        ):
            pass


class ControlStateCollector(Collector):
    def __init__(
        self,
        controller: Controller,
        hub: Hub,
        gpu: GpuMonitor,
        vllm: VllmMetricsReader | None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._controller = controller
        self._hub = hub
        self._gpu = gpu
        self._vllm = vllm

    def collect(self) -> Iterable[Metric]:
        snap = self._controller.current
        m = snap.state.migration
        yield GaugeMetricFamily(
            "llm_control_config_version", "Current config version.", value=snap.version
        )
        phase = GaugeMetricFamily(
            "llm_control_phase",
            "Migration phase (1 for the current one) and rollout status.",
            labels=("phase", "status"),
        )
        phase.add_metric((m.phase.name.lower(), m.status.name.lower()), 1.0)
        yield phase
        yield GaugeMetricFamily(
            "llm_control_vllm_traffic_percent",
            "Share of traffic placed on vLLM (0-100).",
            value=m.vllm_traffic_percent,
        )
        routers = self._hub.routers()
        yield GaugeMetricFamily(
            "llm_control_routers_connected",
            "Routers with an open config session.",
            value=sum(1 for r in routers if r.connected),
        )
        yield GaugeMetricFamily(
            "llm_control_routers_synced",
            "Connected routers that applied the current version.",
            value=sum(1 for r in routers if r.view(snap.version) is RouterView.SYNCED),
        )
        yield from self._gpu_metrics()
        yield from self._vllm_metrics()

    def _gpu_metrics(self) -> Iterable[Metric]:
        s = self._gpu.metrics_snapshot()
        yield GaugeMetricFamily(
            "llm_control_gpu_telemetry_available",
            "1 when GPU telemetry is being read.",
            value=1.0 if s.status.available else 0.0,
        )
        labels = ("gpu", "uuid", "name")
        fams = {
            "total": GaugeMetricFamily(
                "llm_control_gpu_memory_total_bytes", "GPU memory total.", labels=labels
            ),
            "used": GaugeMetricFamily(
                "llm_control_gpu_memory_used_bytes", "GPU memory used.", labels=labels
            ),
            "free": GaugeMetricFamily(
                "llm_control_gpu_memory_free_bytes", "GPU memory free.", labels=labels
            ),
            "util": GaugeMetricFamily(
                "llm_control_gpu_utilization_percent", "GPU utilisation.", labels=labels
            ),
            "temp": GaugeMetricFamily(
                "llm_control_gpu_temperature_celsius", "GPU temperature.", labels=labels
            ),
            "power": GaugeMetricFamily(
                "llm_control_gpu_power_draw_watts", "GPU power draw.", labels=labels
            ),
        }
        for d in s.status.devices if s.status.available else ():
            key = (str(d.index), d.uuid, d.name)
            for fam, value in (
                ("total", d.memory_total_bytes),
                ("used", d.memory_used_bytes),
                ("free", d.memory_free_bytes),
                ("util", d.utilization_gpu_percent),
                ("temp", d.temperature_celsius),
                ("power", d.power_draw_watts),
            ):
                if value is not None:
                    fams[fam].add_metric(key, float(value))
        yield from fams.values()
        oom = CounterMetricFamily(
            "llm_control_gpu_oom_events", "Suspected GPU OOM events since start."
        )
        oom.add_metric((), float(s.oom_events_total))
        yield oom

    def _vllm_metrics(self) -> Iterable[Metric]:
        if self._vllm is None:
            return
        yield GaugeMetricFamily(
            "llm_control_vllm_metrics_up",
            "1 when the last read of vLLM's /metrics worked.",
            value=1.0 if self._vllm.up else 0.0,
        )
        f = self._vllm.latest
        if f is None:
            return
        for name, help_, value in (
            (
                "llm_control_vllm_prefix_cache_hits",
                "vLLM prefix cache hits (tokens).",
                f.prefix_cache_hits,
            ),
            (
                "llm_control_vllm_prefix_cache_queries",
                "vLLM prefix cache queries (tokens).",
                f.prefix_cache_queries,
            ),
        ):
            if value is not None:
                c = CounterMetricFamily(name, help_)
                c.add_metric((), value)
                yield c
        for name, help_, value in (
            (
                "llm_control_vllm_requests_waiting",
                "vLLM requests waiting (queue depth).",
                f.requests_waiting,
            ),
            ("llm_control_vllm_requests_running", "vLLM requests running.", f.requests_running),
            (
                "llm_control_vllm_kv_cache_usage_ratio",
                "vLLM KV cache usage (0-1).",
                f.kv_cache_usage,
            ),
            (
                "llm_control_vllm_prefix_cache_hit_ratio",
                "vLLM prefix cache hits/queries since its start.",
                f.prefix_cache_hit_rate,
            ),
        ):
            if value is not None:
                yield GaugeMetricFamily(name, help_, value=value)
