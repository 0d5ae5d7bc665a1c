"""One router's RouterSession stream: hello, then a writer (snapshots from the hub) and a reader
(ACK / NACK / stats) running side by side until either side ends.

The snapshot bytes come pre-serialized from the hub; the method is registered with an identity
response serializer (see ``servicer.add_to_server``), so a version is serialized once, not once
per router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc

from clients.gen.llmgateway.v1 import control_pb2
from control_service.authz import ANONYMOUS, NAME_RE, Principal
from control_service.engines import ReplicaEvidenceBook
from control_service.errors import FieldViolation, InvalidChange
from control_service.grpc_errors import to_status
from control_service.hub import Hub, HubFull, IdInUse, RouterRecord, Session
from control_service.shadow_store import ShadowStore
from control_service.stats_ingest import StatsIngest
from control_service.stats_validation import check_report, summary
from control_service.stats_windows import StatsWindows
from control_service.store import Decision
from llmcore.logsafe import safe

log = logging.getLogger(__name__)

StatsSink = Callable[[str, control_pb2.StatsReport], None]
SessionContext = grpc.aio.ServicerContext[control_pb2.RouterSessionRequest, bytes]


MAX_NACK_REASON = 1024
MAX_INSTANCE_ID = 64
# A router whose reports keep being refused files one audit event per this many seconds.
AUDIT_EVERY_S = 60.0


@dataclass(frozen=True)
class SessionPolicy:
    """Who the caller is (the principal the credential resolved to), the audit sink, and the
    ceilings of stats reports. The defaults admit anyone (tests of the hub alone)."""

    principal: Callable[[SessionContext], Principal] = lambda _ctx: ANONYMOUS
    record: Callable[[Decision], Awaitable[object]] | None = None
    max_report_count: int = 10_000_000
    clock: Callable[[], float] = time.monotonic


class SessionHandler:
    def __init__(
        self,
        hub: Hub,
        stats: StatsWindows,
        shadow: ShadowStore | None = None,
        policy: SessionPolicy | None = None,
        sink: StatsSink | None = None,
        catch_up_s: float = 0.0,
        replicas: ReplicaEvidenceBook | None = None,
    ) -> None:
        self._hub = hub
        self._replicas = replicas  # per-replica evidence of engine pools (docs/pools.md)
        self._stats = stats
        self._shadow = shadow
        self._policy = policy or SessionPolicy()
        self._audited: dict[str, float] = {}
        # HA: a router that failed over from a replica a version ahead of this one waits this
        # long for this replica's watch to catch up, so it is never sent an older version (a
        # config flap); after that (a store that really is older) it gets what there is.
        self._catch_up_s = catch_up_s
        # Where a valid stats report goes: this process's windows, or (HA) the etcd stats relay,
        # which feeds every replica's windows, so the leader's rollback loop sees the whole fleet.
        self._sink = sink if sink is not None else StatsIngest(stats, shadow).add

    async def handle(
        self,
        requests: AsyncIterator[control_pb2.RouterSessionRequest],
        context: SessionContext,
    ) -> None:
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        hello = first.hello
        bad = _check_hello(first)
        if bad:
            await context.abort_with_status(to_status(InvalidChange(bad)))
        principal = self._policy.principal(context)
        if principal.authenticated and not principal.may_claim(hello.router_id):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{principal.identity} may not connect as router {safe(hello.router_id)!r}",
            )
        try:
            session = self._hub.open(
                hello.router_id, hello.address, hello.applied_version, hello.instance_id
            )
        except IdInUse as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except HubFull as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except RuntimeError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control service is stopping")
        log.info(
            "router %s connected (applied v%d, current v%d)",
            safe(hello.router_id),
            hello.applied_version,
            self._hub.current.version if self._hub.current else 0,
        )
        await self._catch_up(hello.applied_version)
        reader = asyncio.create_task(self._read(session, requests))
        try:
            while (pub := await self._hub.next_to_send(session)) is not None:
                await context.write(pub.payload)
                self._hub.sent(session, pub.version)
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            self._hub.close(session)
            log.info("router %s disconnected", safe(hello.router_id))
        if session.superseded:
            # Usually the dead half of a reconnect; if not, two routers share one id.
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"a newer session of router {hello.router_id!r} replaced this one",
            )
        refused = session.refused
        if refused is not None:
            await context.abort_with_status(to_status(InvalidChange(refused)))
        if self._hub.shutting_down:
            # UNAVAILABLE is transient: the router reconnects (to a restarted or other replica).
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control service is stopping")

    async def _catch_up(self, applied_version: int) -> None:
        hub = self._hub
        if not self._catch_up_s or (hub.current and hub.current.version >= applied_version):
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._catch_up_s):
                await hub.wait_for(
                    lambda: hub.current is not None and hub.current.version >= applied_version
                )

    async def _read(
        self, session: Session, requests: AsyncIterator[control_pb2.RouterSessionRequest]
    ) -> None:
        router_id = session.record.router_id
        try:
            async for req in requests:
                kind = req.WhichOneof("message")
                if kind == "ack":
                    self._hub.ack(session, req.ack.version)
                elif kind == "nack":
                    reason = req.nack.reason[:MAX_NACK_REASON]
                    log.warning(
                        "router %s refused v%d: %s", safe(router_id), req.nack.version, safe(reason)
                    )
                    self._hub.nack(session, req.nack.version, reason)
                elif kind == "stats":
                    bad = check_report(
                        req.stats,
                        current_version=self._hub.current.version if self._hub.current else 0,
                        max_count=self._policy.max_report_count,
                    )
                    if bad:
                        await self._refuse(session, bad)
                        return
                    self._sink(router_id, req.stats)
                    if self._replicas is not None:
                        self._replicas.add(router_id, req.stats.replicas)
                self._hub.seen(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream ends the session, not the service
            log.debug("router %s session read ended: %s", safe(router_id), safe(repr(exc)))
        finally:
            # The router stopped sending (or went away): end the writer too.
            self._hub.close(session)

    async def _refuse(self, session: Session, bad: list[FieldViolation]) -> None:
        """End the session of a router whose report cannot be trusted: nothing of the report is
        kept, the session is refused (INVALID_ARGUMENT naming the fields) and the refusal
        audited, at most once per :data:`AUDIT_EVERY_S` per router."""
        router_id = session.record.router_id
        session.refused = tuple(bad)
        text = summary(bad)
        log.warning(
            "router %s sent invalid stats, session refused: %s", safe(router_id), safe(text)
        )
        now = self._policy.clock()
        record = self._policy.record
        if (
            record is not None
            and now - self._audited.get(router_id, -AUDIT_EVERY_S) >= AUDIT_EVERY_S
        ):
            self._audited[router_id] = now
            try:
                await record(
                    Decision(
                        f"router:{router_id}",
                        "router_stats_refused",
                        f"invalid stats report, session refused: {text}"[:1024],
                        {"router_id": router_id, "violations": [v.field for v in bad[:10]]},
                    )
                )
            except Exception as exc:  # noqa: BLE001 - the refusal stands without its event
                log.warning("could not audit the refusal: %s", safe(repr(exc)))


def _check_hello(first: control_pb2.RouterSessionRequest) -> list[FieldViolation]:
    if first.WhichOneof("message") != "hello":
        return [FieldViolation("hello.router_id", "the first message must be a hello with one")]
    hello = first.hello
    bad = []
    if not NAME_RE.match(hello.router_id):
        bad.append(
            FieldViolation(
                "hello.router_id", "1-128 characters of [A-Za-z0-9._:-], a letter or digit first"
            )
        )
    if len(hello.instance_id) > MAX_INSTANCE_ID:
        bad.append(FieldViolation("hello.instance_id", f"at most {MAX_INSTANCE_ID} characters"))
    if len(hello.address) > 256:
        bad.append(FieldViolation("hello.address", "at most 256 characters"))
    if hello.applied_version < 0:
        bad.append(FieldViolation("hello.applied_version", "must not be negative"))
    return bad


class ExpiryAudit:
    """The hub's ``on_expire``: an audit event per router record dropped, so the fleet's
    history outlives the hub's view. The hub is synchronous; the event is written by a task
    (kept here until done)."""

    def __init__(self, record: Callable[[Decision], Awaitable[object]]) -> None:
        self._record = record
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, rec: RouterRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._write(rec))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for the events being written (on stop, and for tests)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def _write(self, rec: RouterRecord) -> None:
        try:
            await self._record(
                Decision(
                    "control-service",
                    "router_expired",
                    f"router {rec.router_id} disconnected since {rec.disconnected_at:.0f}: "
                    "dropped from the hub",
                    {
                        "router_id": rec.router_id,
                        "address": rec.address,
                        "applied_version": rec.applied_version,
                        "last_seen": rec.last_seen,
                        "sessions": rec.sessions,
                    },
                )
            )
        except Exception as exc:  # noqa: BLE001 - the record is gone either way
            log.warning(
                "could not audit the expiry of %s: %s", safe(rec.router_id), safe(repr(exc))
            )
