"""The engine-pool RPCs (docs/pools.md), mixed into ``ControlServicer``: ``ListEngines`` and
``DrainReplica``. The servicer provides the error mapping, the audit metadata and the snapshot
encoding; this module only what is particular to the pools."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from clients.gen.llmgateway.v1 import control_pb2
from control_service.controller import Controller
from control_service.engines import EngineDirectory, with_drained
from control_service.errors import FieldViolation, InvalidChange
from control_service.state import ChangeMeta, Snapshot, with_flags

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


class EnginePoolRpcs:
    _engines: EngineDirectory | None
    _controller: Controller

    async def _call(self, context: Context, fn: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError  # ControlServicer's

    def _change_meta(self, meta: control_pb2.ChangeMeta, context: Context) -> ChangeMeta:
        raise NotImplementedError  # ControlServicer's

    def _snapshot(self, snap: Snapshot) -> control_pb2.ConfigSnapshot:
        raise NotImplementedError  # ControlServicer's

    async def ListEngines(
        self, request: control_pb2.ListEnginesRequest, context: Context
    ) -> control_pb2.ListEnginesResponse:
        engines = self._engines
        if engines is None:
            return control_pb2.ListEnginesResponse()
        return await self._call(context, engines.list)

    async def DrainReplica(
        self, request: control_pb2.DrainReplicaRequest, context: Context
    ) -> control_pb2.DrainReplicaResponse:
        async def run() -> Snapshot:
            url = request.url.strip().rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise InvalidChange(
                    [FieldViolation("url", "must be a replica base URL, http(s)://host:port")]
                )
            drain = not request.undrain
            return await self._controller.change(
                "drain_replica" if drain else "undrain_replica",
                self._change_meta(request.meta, context),
                lambda s: with_flags(s, with_drained(s.flags, url, drain)),
            )

        snap = await self._call(context, run)
        return control_pb2.DrainReplicaResponse(snapshot=self._snapshot(snap))
