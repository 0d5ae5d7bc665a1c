"""Stats ingestion with several replicas: through the store (etcd), not by forwarding.

A router reports to whichever replica holds its session. That replica writes the report, as
received, to ``{prefix}/stats/{replica}/{seq}/{router_id}`` on a lease that expires after the
stats retention; every replica (the leader included) watches ``{prefix}/stats/`` and feeds each
report into its own windows. Why through etcd rather than forwarding to the leader over gRPC:

* a newly elected leader starts with the whole retention window (it reads the stored reports
  once), so its first rollback evaluation already sees the last minutes of traffic; forwarded
  reports would have died with the old leader's memory, and its rules would be blind for a
  window;
* followers need no leader address and no retry queue for stats; a report written is a report
  every replica will see, in the order etcd applied them;
* every replica answers reads that need stats (go/no-go, the shadow report) alike.

The cost is one small etcd write per report (a router reports every 10 s: 100 routers are 10
writes/s). Leases are shared per minute of writes (one grant a minute, not one per report), each
with a TTL of the retention plus that minute, so old reports disappear on their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from clients.gen.llmgateway.v1 import control_pb2
from control_service.errors import StoreError
from control_service.leadership.tasks import cancel_all
from control_service.store.etcd_client import KV, EtcdClient, Put, prefix_end

log = logging.getLogger(__name__)

LEASE_BUCKET_S = 60
QUEUE_MAX = 10_000  # reports waiting for etcd; beyond it the oldest are dropped (and counted)

Ingest = Callable[[str, control_pb2.StatsReport], None]


class StatsRelay:
    def __init__(
        self,
        client: EtcdClient,
        prefix: bytes,
        replica_id: str,
        ingest: Ingest,
        retention_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._replica = replica_id.replace("/", "_")
        self._ingest = ingest
        self._ttl = int(retention_s) + LEASE_BUCKET_S
        self._clock = clock
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_MAX)
        self._seq = time.time_ns()  # unique across restarts of this replica
        self._leases: dict[int, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.dropped = 0
        self.ingested = 0
        self.ready = asyncio.Event()  # the stored reports were read once

    def publish(self, router_id: str, report: control_pb2.StatsReport) -> None:
        """Queue one report for etcd (non-blocking: the session reader never waits on it)."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait((router_id, report.SerializeToString()))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._writer(), name="stats-relay-writer"),
            asyncio.create_task(self._reader(), name="stats-relay-reader"),
        ]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    async def _lease(self) -> int:
        bucket = int(self._clock() // LEASE_BUCKET_S)
        lease = self._leases.get(bucket)
        if lease is None:
            lease = self._leases[bucket] = await self._client.grant(self._ttl)
            for old in [b for b in self._leases if b < bucket]:
                del self._leases[old]  # expires by itself; only the newest is written to
        return lease

    async def _writer(self) -> None:
        while True:
            router_id, raw = await self._queue.get()
            self._seq += 1
            key = self._prefix + f"{self._replica}/{self._seq:020d}/{router_id}".encode()
            while True:
                try:
                    await self._client.txn([], [Put(key, raw, await self._lease())])
                    self.published += 1
                    break
                except StoreError as exc:
                    log.warning("stats report of %s not stored yet: %s", router_id, exc)
                    await asyncio.sleep(0.5)

    def _deliver(self, kv: KV) -> None:
        router_id = kv.key[len(self._prefix) :].split(b"/", 2)[-1].decode(errors="replace")
        report = control_pb2.StatsReport()
        try:
            report.ParseFromString(kv.value)
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the relay
            log.warning("unreadable stored stats report %r: %s", kv.key, exc)
            return
        self.ingested += 1
        self._ingest(router_id, report)

    async def _reader(self) -> None:
        revision = 0
        while True:
            try:
                if revision == 0:
                    revision, stored = await self._client.range_at(
                        self._prefix, prefix_end(self._prefix)
                    )
                    for kv in stored:
                        self._deliver(kv)
                    self.ready.set()
                async for ev in self._client.watch(
                    self._prefix, prefix=True, start_revision=revision + 1
                ):
                    revision = ev.kv.mod_revision
                    if ev.kind == "put":
                        self._deliver(ev.kv)
            except StoreError as exc:
                log.warning("stats watch broke (%s); resuming", exc)
            await asyncio.sleep(0.2)
