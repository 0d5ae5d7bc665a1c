"""ControlService servicer: translates protos into controller calls; errors map in ``_call``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from clients.gen.llmgateway.v1 import control_pb2
from control_service import convert, gpu_convert, phases
from control_service.authz import ANONYMOUS, Principal
from control_service.controller import Controller
from control_service.engines import EngineDirectory
from control_service.engines_rpc import EnginePoolRpcs
from control_service.errors import ControlError, FieldViolation, InvalidChange
from control_service.gpu_service import GpuService
from control_service.grpc_errors import to_status
from control_service.health import Health, HealthAggregator
from control_service.hub import Hub
from control_service.parity_service import ParityService, moves_embed_off_ollama
from control_service.rollback.gonogo import GoNoGo
from control_service.session import SessionHandler, SessionPolicy, StatsSink
from control_service.shadow_store import DEFAULT_WORST, ShadowStore
from control_service.state import ChangeMeta, Flags, Snapshot, with_flags
from control_service.stats_windows import StatsWindows

log = logging.getLogger(__name__)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 1000, 50
MAX_SHADOW_WORST = 1000

_HEALTH_TO_PROTO = {
    Health.OK: control_pb2.HEALTH_STATUS_OK,
    Health.DEGRADED: control_pb2.HEALTH_STATUS_DEGRADED,
    Health.DOWN: control_pb2.HEALTH_STATUS_DOWN,
}


MAX_ACTOR, MAX_REASON = 128, 1024
Identify = Callable[[Context], Principal]


def _meta(meta: control_pb2.ChangeMeta, caller: Principal = ANONYMOUS) -> ChangeMeta:
    """The audit fields of a change: checked lengths, and the credential's identity as the
    actor (the client's own name kept as a note). Unauthenticated (insecure mode): the
    client's name is all there is."""
    bad = []
    if len(meta.actor) > MAX_ACTOR:
        bad.append(FieldViolation("meta.actor", f"at most {MAX_ACTOR} characters"))
    if len(meta.reason) > MAX_REASON:
        bad.append(FieldViolation("meta.reason", f"at most {MAX_REASON} characters"))
    if bad:
        raise InvalidChange(bad)
    if not caller.authenticated:
        return ChangeMeta(meta.actor, meta.reason, meta.expected_version)
    note = meta.actor if meta.actor and meta.actor != caller.identity else ""
    return ChangeMeta(caller.identity, meta.reason, meta.expected_version, actor_note=note)


class ControlServicer(EnginePoolRpcs):
    """Implements every ControlService RPC (checked against the descriptor at registration)."""

    def __init__(
        self,
        controller: Controller,
        hub: Hub,
        stats: StatsWindows,
        health: HealthAggregator,
        *,
        gpu: GpuService,
        gonogo: GoNoGo | None = None,
        shadow: ShadowStore | None = None,
        identify: Identify | None = None,
        session_policy: SessionPolicy | None = None,
        stats_sink: StatsSink | None = None,
        session_catch_up_s: float = 0.0,
        parity: ParityService | None = None,
        engines: EngineDirectory | None = None,
    ) -> None:
        self._controller = controller
        # Who the caller is (control_service.auth); None: everyone is anonymous (no credentials).
        self._identify: Identify = identify or (lambda _ctx: ANONYMOUS)
        self._hub = hub
        self._health = health
        self._gpu = gpu
        # The go/no-go gate; None: promotion to PRIMARY is not gated and EvaluateGoNoGo is
        # UNAVAILABLE.
        self._gonogo = gonogo
        # Embedding parity: the measurement and the guard on embedding_provider; None: neither.
        self._parity = parity
        # A bound coroutine function: grpc.aio picks the reader/writer API by inspecting it.
        self._shadow = shadow if shadow is not None else ShadowStore()
        # Engine pools (control_service.engines_rpc): every replica, and the routers' evidence.
        self._engines = engines
        self.RouterSession = SessionHandler(
            hub,
            stats,
            self._shadow,
            session_policy,
            sink=stats_sink,
            catch_up_s=session_catch_up_s,
            replicas=engines.evidence if engines is not None else None,
        ).handle

    async def _call(self, context: Context, fn: Callable[[], Awaitable[T]]) -> T:
        """The one error mapping: domain errors to rich statuses, anything else to INTERNAL."""
        try:
            return await fn()
        except ControlError as err:
            status = to_status(err)
        except Exception as exc:
            log.exception("control service fault")
            status = to_status(ControlError(f"control service fault: {type(exc).__name__}"))
        await context.abort_with_status(status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    def _snapshot(self, snap: Snapshot) -> control_pb2.ConfigSnapshot:
        return convert.snapshot_to_proto(snap)

    def _change_meta(self, meta: control_pb2.ChangeMeta, context: Context) -> ChangeMeta:
        return _meta(meta, self._identify(context))

    async def _verb(
        self, context: Context, meta: control_pb2.ChangeMeta, verb: Callable[[], phases.Verb]
    ) -> control_pb2.ConfigSnapshot:
        async def run() -> Snapshot:
            return await self._controller.migrate(verb(), _meta(meta, self._identify(context)))

        return self._snapshot(await self._call(context, run))

    # --- reads -----------------------------------------------------------------------------

    async def GetState(
        self, request: control_pb2.GetStateRequest, context: Context
    ) -> control_pb2.GetStateResponse:
        snap = await self._controller.fresh()
        return control_pb2.GetStateResponse(
            snapshot=self._snapshot(snap),
            routers=[convert.router_to_proto(r, snap.version) for r in self._hub.routers()],
        )

    async def ListEvents(
        self, request: control_pb2.ListEventsRequest, context: Context
    ) -> control_pb2.ListEventsResponse:
        async def run() -> control_pb2.ListEventsResponse:
            bad = []
            if not 0 <= request.page_size <= MAX_PAGE_SIZE:
                bad.append(FieldViolation("page_size", f"must be in [0, {MAX_PAGE_SIZE}]"))
            if request.before_version < 0:
                bad.append(FieldViolation("before_version", "must not be negative"))
            if bad:
                raise InvalidChange(bad)
            size = request.page_size or DEFAULT_PAGE_SIZE
            # A page never splits the events of one version (a change plus the decisions filed
            # under it), so it may hold a few more than page_size.
            events, next_before = await self._controller.event_page(request.before_version, size)
            return control_pb2.ListEventsResponse(
                events=[convert.event_to_proto(e) for e in events],
                next_before_version=next_before,
            )

        return await self._call(context, run)

    async def GetHealth(
        self, request: control_pb2.GetHealthRequest, context: Context
    ) -> control_pb2.GetHealthResponse:
        status, components = await self._call(context, self._health.check)
        return control_pb2.GetHealthResponse(
            status=_HEALTH_TO_PROTO[status],
            components=[
                control_pb2.ComponentHealth(
                    name=c.name,
                    status=_HEALTH_TO_PROTO[c.status],
                    detail=c.detail,
                    latency_ms=c.latency_ms,
                )
                for c in components
            ],
        )

    # --- operator verbs --------------------------------------------------------------------

    async def Promote(
        self, request: control_pb2.PromoteRequest, context: Context
    ) -> control_pb2.PromoteResponse:
        gonogo = self._gonogo
        if gonogo is None:
            snap = await self._verb(context, request.meta, lambda: phases.Promote(request.full))
            return control_pb2.PromoteResponse(snapshot=snap)

        async def run() -> Snapshot:
            return await gonogo.promote(
                self._controller,
                request.full,
                request.force,
                _meta(request.meta, self._identify(context)),
            )

        return control_pb2.PromoteResponse(snapshot=self._snapshot(await self._call(context, run)))

    async def SetWeight(
        self, request: control_pb2.SetWeightRequest, context: Context
    ) -> control_pb2.SetWeightResponse:
        snap = await self._verb(
            context, request.meta, lambda: phases.SetWeight(request.weight_percent)
        )
        return control_pb2.SetWeightResponse(snapshot=snap)

    async def Pause(
        self, request: control_pb2.PauseRequest, context: Context
    ) -> control_pb2.PauseResponse:
        snap = await self._verb(context, request.meta, lambda: phases.Pause(request.meta.reason))
        return control_pb2.PauseResponse(snapshot=snap)

    async def Resume(
        self, request: control_pb2.ResumeRequest, context: Context
    ) -> control_pb2.ResumeResponse:
        snap = await self._verb(context, request.meta, phases.Resume)
        return control_pb2.ResumeResponse(snapshot=snap)

    async def Abort(
        self, request: control_pb2.AbortRequest, context: Context
    ) -> control_pb2.AbortResponse:
        snap = await self._verb(context, request.meta, lambda: phases.Abort(request.meta.reason))
        return control_pb2.AbortResponse(snapshot=snap)

    async def Retry(
        self, request: control_pb2.RetryRequest, context: Context
    ) -> control_pb2.RetryResponse:
        snap = await self._verb(context, request.meta, phases.Retry)
        return control_pb2.RetryResponse(snapshot=snap)

    async def Undo(
        self, request: control_pb2.UndoRequest, context: Context
    ) -> control_pb2.UndoResponse:
        snap = await self._verb(
            context,
            request.meta,
            lambda: phases.Undo(convert.phase_from_proto(request.to_phase, "to_phase")),
        )
        return control_pb2.UndoResponse(snapshot=snap)

    async def UpdateFlags(
        self, request: control_pb2.UpdateFlagsRequest, context: Context
    ) -> control_pb2.UpdateFlagsResponse:
        parity_guard = self._parity

        def change(current: Flags) -> Flags:
            new = convert.apply_flags_update(current, request.flags, request.update_mask)
            if parity_guard is not None:  # moving Embed off Ollama needs embedding parity
                parity_guard.check_move(current, new, request.force, request.meta.reason)
            return new

        async def run() -> Snapshot:
            current = self._controller.current.state.flags
            forced = (
                parity_guard is not None
                and request.force
                and moves_embed_off_ollama(current, change(current))
            )
            # A forced move is audited under its own action, the reason naming the re-index.
            action = "force_embedding_provider" if forced else "update_flags"
            return await self._controller.change(
                action,
                _meta(request.meta, self._identify(context)),
                lambda s: with_flags(s, change(s.flags)),
            )

        snap = await self._call(context, run)
        return control_pb2.UpdateFlagsResponse(snapshot=self._snapshot(snap))

    # --- GPU telemetry and model selection (control_service.gpu_service) ------------------

    async def GetGpuStatus(
        self, request: control_pb2.GetGpuStatusRequest, context: Context
    ) -> control_pb2.GetGpuStatusResponse:
        monitor = self._gpu.monitor
        return control_pb2.GetGpuStatusResponse(
            status=gpu_convert.status_to_proto(monitor.latest, monitor)
        )

    async def WatchGpuStatus(
        self, request: control_pb2.WatchGpuStatusRequest, context: Context
    ) -> AsyncIterator[control_pb2.WatchGpuStatusResponse]:
        # An async generator, not context.write: the OTel aio server interceptor only wraps
        # generators (opentelemetry-python-contrib#3066). Ends when the monitor stops.
        monitor = self._gpu.monitor
        async for status in monitor.updates():
            yield control_pb2.WatchGpuStatusResponse(
                status=gpu_convert.status_to_proto(status, monitor)
            )

    async def SelectModel(
        self, request: control_pb2.SelectModelRequest, context: Context
    ) -> control_pb2.SelectModelResponse:
        async def run() -> control_pb2.SelectModelResponse:
            selection = self._gpu.select(
                gpu_convert.task_from_proto(request.task),
                budget_bytes=request.budget_bytes if request.HasField("budget_bytes") else None,
                engine=gpu_convert.provider_from_proto(request.provider),
                whole_catalog=request.whole_catalog,
            )
            return gpu_convert.selection_to_proto(selection)

        return await self._call(context, run)

    async def SetTaskModel(
        self, request: control_pb2.SetTaskModelRequest, context: Context
    ) -> control_pb2.SetTaskModelResponse:
        async def run() -> Snapshot:
            return await self._gpu.set_task_model(
                _meta(request.meta, self._identify(context)),
                gpu_convert.task_from_proto(request.task),
                request.model,
                force=request.force,
            )

        snap = await self._call(context, run)
        return control_pb2.SetTaskModelResponse(snapshot=self._snapshot(snap))

    async def GetShadowReport(
        self, request: control_pb2.GetShadowReportRequest, context: Context
    ) -> control_pb2.GetShadowReportResponse:
        async def run() -> control_pb2.GetShadowReportResponse:
            bad = []
            if request.window_seconds < 0:
                bad.append(FieldViolation("window_seconds", "must not be negative"))
            if not 0 <= request.worst <= MAX_SHADOW_WORST:
                bad.append(FieldViolation("worst", f"must be in [0, {MAX_SHADOW_WORST}]"))
            if bad:
                raise InvalidChange(bad)
            return self._shadow.report(
                request.window_seconds, request.worst or DEFAULT_WORST, request.by_episode
            )

        return await self._call(context, run)

    async def MeasureEmbeddingParity(
        self, request: control_pb2.MeasureEmbeddingParityRequest, context: Context
    ) -> control_pb2.MeasureEmbeddingParityResponse:
        parity = self._parity
        if parity is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "embedding parity is not configured")
            raise AssertionError("unreachable")  # pragma: no cover

        async def run() -> control_pb2.MeasureEmbeddingParityResponse:
            m = await parity.measure(
                _meta(request.meta, self._identify(context)),
                list(request.texts),
                request.k,
                request.sample,
            )
            return convert.parity_to_proto(m, parity.min_cosine_p10, parity.min_overlap)

        return await self._call(context, run)

    async def EvaluateGoNoGo(
        self, request: control_pb2.EvaluateGoNoGoRequest, context: Context
    ) -> control_pb2.EvaluateGoNoGoResponse:
        gonogo = self._gonogo
        if gonogo is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the go/no-go gate is not configured")
            raise AssertionError("unreachable")  # pragma: no cover

        async def run() -> control_pb2.EvaluateGoNoGoResponse:
            return convert.gate_to_proto(await gonogo.evaluate(run_golden=request.run_golden))

        return await self._call(context, run)


def _identity(payload: bytes) -> bytes:
    return payload


def add_to_server(servicer: ControlServicer, server: grpc.aio.Server) -> None:
    """Register every ControlService method from the descriptor (a missing implementation fails
    here, at start). Same as the generated ``add_ControlServiceServicer_to_server`` except that
    RouterSession writes pre-serialized bytes (identity response serializer)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in SERVICE.methods:
        fn = getattr(servicer, method.name)
        request_cls = getattr(control_pb2, method.input_type.name)
        response_cls = getattr(control_pb2, method.output_type.name)
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                fn, request_deserializer=request_cls.FromString, response_serializer=_identity
            )
        elif not method.client_streaming and not method.server_streaming:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                fn,
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        else:  # pragma: no cover - the proto has no such method today
            raise NotImplementedError(f"{method.full_name}: unsupported streaming kind")
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),)
    )
