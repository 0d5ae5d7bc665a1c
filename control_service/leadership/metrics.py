"""Prometheus view of this replica's leadership (``/metrics``)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from control_service.leadership.replica import Replica


class LeadershipCollector(Collector):
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def collect(self) -> Iterable[Metric]:
        r = self._replica
        view = r.view
        me = r.elector.me.replica_id
        leader = GaugeMetricFamily(
            "llm_control_leader",
            "1 while this replica is the leader (decides rollbacks, accepts mutations).",
            labels=("replica",),
        )
        leader.add_metric((me,), 1.0 if view.is_leader else 0.0)
        yield leader
        yield GaugeMetricFamily(
            "llm_control_leader_term",
            "The leadership term known here (the leader key's etcd create_revision; 0: none).",
            value=view.term,
        )
        yield CounterMetricFamily(
            "llm_control_leadership_changes",
            "Changes of this replica's leadership view (elected, deposed, new leader).",
            value=r.elector.changes,
        )
        yield CounterMetricFamily(
            "llm_control_fenced_writes",
            "Writes the store refused because this replica was not (or no longer) the leader.",
            value=r.store.fenced_writes,
        )
        if r.relay is not None:
            yield CounterMetricFamily(
                "llm_control_stats_relayed",
                "Router stats reports this replica wrote to etcd for every replica.",
                value=r.relay.published,
            )
            yield CounterMetricFamily(
                "llm_control_stats_relay_dropped",
                "Stats reports dropped because etcd could not take them fast enough.",
                value=r.relay.dropped,
            )
