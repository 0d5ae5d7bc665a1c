"""Where a router's stats report lands in this process: the rollback windows (histograms and
counts) and, apart from them, the shadow comparisons. One function, used by the session handler
directly (one replica) or by the etcd stats relay for every replica's reports (HA)."""

from __future__ import annotations

import logging

from clients.gen.llmgateway.v1 import control_pb2
from control_service import convert
from control_service.shadow_store import ShadowStore
from control_service.stats_windows import StatsWindows
from llmcore.logsafe import safe

log = logging.getLogger(__name__)


class StatsIngest:
    def __init__(self, stats: StatsWindows, shadow: ShadowStore | None) -> None:
        self._stats = stats
        self._shadow = shadow

    def add(self, router_id: str, report: control_pb2.StatsReport) -> None:
        try:
            parsed = convert.stats_report_from_proto(router_id, report)
        except ValueError as exc:
            log.warning("router %s sent an unusable stats report: %s", safe(router_id), exc)
        else:
            self._stats.add(parsed)
        if self._shadow is not None:  # comparisons stand apart from the histograms
            self._shadow.add(router_id, report)
