"""Engine pools (issue 17): many replicas of one engine behind the ``Provider`` protocol,
placed by prefix-cache affinity with bounded load, then by load (docs/pools.md)."""

from router_service.pools.placement import Decision, Reason, ReplicaView, Skip, place
from router_service.pools.pool import EnginePool, PoolOptions, ReplicaFactory
from router_service.pools.replica import Replica
from router_service.pools.scrape import SignalScraper
from router_service.pools.sources import DnsSource

__all__ = [
    "Decision",
    "DnsSource",
    "EnginePool",
    "PoolOptions",
    "Reason",
    "Replica",
    "ReplicaFactory",
    "ReplicaView",
    "SignalScraper",
    "Skip",
    "place",
]
