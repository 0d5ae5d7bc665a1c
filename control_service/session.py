"""One router's RouterSession stream: hello, then a writer (snapshots from the hub) and a reader
(ACK / NACK / stats) running side by side until either side ends.

The snapshot bytes come pre-serialized from the hub; the method is registered with an identity
response serializer (see ``servicer.add_to_server``), so a version is serialized once, not once
per router.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from clients.gen.llmgateway.v1 import control_pb2
from control_service import convert
from control_service.errors import FieldViolation, InvalidChange
from control_service.grpc_errors import to_status
from control_service.hub import Hub, Session
from control_service.shadow_store import ShadowStore
from control_service.stats_windows import StatsWindows

log = logging.getLogger(__name__)

SessionContext = grpc.aio.ServicerContext[control_pb2.RouterSessionRequest, bytes]


class SessionHandler:
    def __init__(self, hub: Hub, stats: StatsWindows, shadow: ShadowStore | None = None) -> None:
        self._hub = hub
        self._stats = stats
        self._shadow = shadow

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
        if first.WhichOneof("message") != "hello" or not hello.router_id:
            err = InvalidChange(
                [FieldViolation("hello.router_id", "the first message must be a hello with one")]
            )
            await context.abort_with_status(to_status(err))
        try:
            session = self._hub.open(hello.router_id, hello.address, hello.applied_version)
        except RuntimeError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control service is stopping")
        log.info(
            "router %s connected (applied v%d, current v%d)",
            hello.router_id,
            hello.applied_version,
            self._hub.current.version if self._hub.current else 0,
        )
        reader = asyncio.create_task(self._read(session, requests))
        try:
            while (pub := await self._hub.next_to_send(session)) is not None:
                await context.write(pub.payload)
                self._hub.sent(session, pub.version)
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            self._hub.close(session)
            log.info("router %s disconnected", hello.router_id)
        if session.superseded:
            # Usually the dead half of a reconnect; if not, two routers share one id.
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"a newer session of router {hello.router_id!r} replaced this one",
            )
        if self._hub.shutting_down:
            # UNAVAILABLE is transient: the router reconnects (to a restarted or other replica).
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the control service is stopping")

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
                    log.warning(
                        "router %s refused v%d: %s", router_id, req.nack.version, req.nack.reason
                    )
                    self._hub.nack(session, req.nack.version, req.nack.reason)
                elif kind == "stats":
                    try:
                        report = convert.stats_report_from_proto(router_id, req.stats)
                    except ValueError as exc:
                        log.warning("router %s sent an unusable stats report: %s", router_id, exc)
                    else:
                        self._stats.add(report)
                    if self._shadow is not None:  # comparisons stand apart from the histograms
                        self._shadow.add(router_id, req.stats)
                self._hub.seen(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream ends the session, not the service
            log.debug("router %s session read ended: %r", router_id, exc)
        finally:
            # The router stopped sending (or went away): end the writer too.
            self._hub.close(session)
