"""The router's Prometheus metrics on its own ``CollectorRegistry`` (no global registry).

Histograms follow the GenAI semantic conventions' names (``gen_ai.client.operation.duration``
becomes ``gen_ai_client_operation_duration_seconds``); live state (breakers, config version,
subscriber state, shadow counters) is read at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router_service.request_stats import ShadowRecord

DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TPOT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

_LABELS = ("operation", "provider", "model", "task")


class RouterMetrics:
    """What the request path records into; one per router."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration at the router, first byte in to last byte out.",
            _LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first output chunk, measured at the router.",
            _LABELS,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, measured at the router.",
            _LABELS,
            buckets=TPOT_BUCKETS,
            registry=registry,
        )
        self.tokens = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request, by gen_ai.token.type (input, output).",
            (*_LABELS, "token_type"),
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "llm_router_requests",
            "Requests handled, by operation, provider, task and outcome (ok, error).",
            ("operation", "provider", "task", "outcome"),
            registry=registry,
        )
        self.errors = Counter(
            "llm_router_errors",
            "Failed requests by operation, provider (empty: no engine involved) and error code.",
            ("operation", "provider", "code"),
            registry=registry,
        )
        self.split_decisions = Counter(
            "llm_router_split_decisions",
            "Placement decisions: the provider chosen first for a request, by task.",
            ("task", "provider"),
            registry=registry,
        )
        self.shadow_similarity = Histogram(
            "llm_router_shadow_similarity",
            "Text similarity of a shadow answer to the primary's (0..1), compared pairs only.",
            ("task", "model", "shadow_provider"),
            buckets=SIMILARITY_BUCKETS,
            registry=registry,
        )
        self.shadow_pairs = Counter(
            "llm_router_shadow_pairs",
            "Shadow pairs recorded, by outcome (both_ok, shadow_failed, primary_failed, dropped).",
            ("task", "outcome"),
            registry=registry,
        )

    def observe_shadow(self, record: ShadowRecord) -> None:
        """A ``RequestStatsRecorder`` shadow observer."""
        if record.dropped:
            outcome = "dropped"
        elif not record.primary_ok:
            outcome = "primary_failed"
        elif not record.shadow_ok:
            outcome = "shadow_failed"
        else:
            outcome = "both_ok"
            self.shadow_similarity.labels(
                record.task, record.model, record.shadow_provider
            ).observe(record.text_similarity)
        self.shadow_pairs.labels(record.task, outcome).inc()


@dataclass(frozen=True)
class RouterStateReaders:
    """Callables the collector reads at scrape time (all cheap, all on the event loop)."""

    breaker_states: Callable[[], Mapping[str, str]]  # provider -> closed/open/half_open
    config_version: Callable[[], int]
    subscriber_state: Callable[[], str | None]  # None: standalone (no control service)
    active_requests: Callable[[], int]
    shadow_counters: Callable[[], Mapping[str, int]]  # mirrored, dropped, completed, compared


BREAKER_STATES = ("closed", "open", "half_open")
SUBSCRIBER_STATES = ("connecting", "synced", "stale", "error")


class RouterStateCollector(Collector):
    def __init__(self, readers: RouterStateReaders) -> None:
        self._r = readers

    def collect(self) -> Iterable[Metric]:
        breaker = GaugeMetricFamily(
            "llm_router_breaker_state",
            "Circuit breaker state per engine (1 for the current state).",
            labels=("provider", "state"),
        )
        for provider, state in sorted(self._r.breaker_states().items()):
            for s in BREAKER_STATES:
                breaker.add_metric((provider, s), 1.0 if s == state else 0.0)
        yield breaker
        yield GaugeMetricFamily(
            "llm_router_config_version",
            "Version of the routing config in force (0: bootstrap).",
            value=self._r.config_version(),
        )
        sub = GaugeMetricFamily(
            "llm_router_config_subscriber_state",
            "Config subscriber state (1 for the current one); absent when standalone.",
            labels=("state",),
        )
        current = self._r.subscriber_state()
        if current is not None:
            for s in SUBSCRIBER_STATES:
                sub.add_metric((s,), 1.0 if s == current else 0.0)
        yield sub
        yield GaugeMetricFamily(
            "llm_router_active_requests", "Requests in flight.", value=self._r.active_requests()
        )
        shadow = CounterMetricFamily(
            "llm_router_shadow_mirrors",
            "Shadow mirror counters: mirrored, dropped (queue full), completed, compared.",
            labels=("event",),
        )
        for event, n in sorted(self._r.shadow_counters().items()):
            shadow.add_metric((event,), float(n))
        yield shadow
