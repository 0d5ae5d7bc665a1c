"""The async client of the control service's operator RPCs (what ``llmctl`` and tools use)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self, TypeVar

import grpc
import grpc.aio
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from clients.llm._channel import ChannelOption, channel_options
from clients.llm._convert import new_request_id
from clients.llm._errors import map_rpc_error
from clients.llm._options import CallOptions, ClientDefaults

DEFAULT_CONTROL_TIMEOUT = 10.0
"""Seconds a control call may take unless the client or the call says otherwise."""

_Response = TypeVar("_Response")


class ControlClient:
    """Async client of the control service's ``ControlService`` (all RPCs but RouterSession).

    ``token`` is sent as ``authorization: Bearer <token>`` on every call (mutating RPCs need it
    when the service has an operator token). Mutating methods take the ``ChangeMeta`` fields as
    keyword arguments: ``expected_version`` non-zero makes the call a compare-and-set. Methods
    return the response's ``ConfigSnapshot`` (or the whole response for reads); failures raise
    :class:`clients.llm.RouterError` subclasses whose ``status_code`` says what happened
    (FAILED_PRECONDITION: illegal transition, ABORTED: version conflict, INVALID_ARGUMENT with
    ``field_violations``, UNAUTHENTICATED / PERMISSION_DENIED: the token).
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_CONTROL_TIMEOUT,
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[ChannelOption] = (),
    ) -> None:
        merged = channel_options(options)
        channel = (
            grpc.aio.secure_channel(target, credentials, options=merged)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=merged)
        )
        self._setup(channel, True, _defaults(token, timeout, metadata, wait_for_ready))

    @classmethod
    def from_channel(
        cls,
        channel: grpc.aio.Channel,
        *,
        token: str | None = None,
        timeout: float | None = DEFAULT_CONTROL_TIMEOUT,
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
    ) -> Self:
        """A client on ``channel``; :meth:`close` leaves the channel open."""
        client = cls.__new__(cls)
        client._setup(channel, False, _defaults(token, timeout, metadata, wait_for_ready))
        return client

    def _setup(
        self, channel: grpc.aio.Channel, owns_channel: bool, defaults: ClientDefaults
    ) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._defaults = defaults
        self._stub = control_pb2_grpc.ControlServiceStub(channel)

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel calls go through."""
        return self._channel

    async def close(self) -> None:
        """Closes the channel if the client opened it."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _unary(
        self,
        method: Callable[..., Awaitable[_Response]],
        request: object,
        options: CallOptions | None,
    ) -> _Response:
        resolved = self._defaults.resolve(options, new_request_id())
        try:
            return await method(
                request,
                timeout=resolved.timeout,
                metadata=resolved.metadata,
                wait_for_ready=resolved.wait_for_ready,
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc

    # --- reads --------------------------------------------------------------------------------

    async def get_state(
        self, *, options: CallOptions | None = None
    ) -> control_pb2.GetStateResponse:
        """The current snapshot and every router the service has seen (``GetState``)."""
        return await self._unary(self._stub.GetState, control_pb2.GetStateRequest(), options)

    async def list_events(
        self,
        *,
        page_size: int = 0,
        before_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ListEventsResponse:
        """One page of the audit log, newest first (``ListEvents``; 0 page size means 50)."""
        request = control_pb2.ListEventsRequest(page_size=page_size, before_version=before_version)
        return await self._unary(self._stub.ListEvents, request, options)

    async def get_health(
        self, *, options: CallOptions | None = None
    ) -> control_pb2.GetHealthResponse:
        """The aggregate health of the store, the routers and the engines (``GetHealth``)."""
        return await self._unary(self._stub.GetHealth, control_pb2.GetHealthRequest(), options)

    async def get_shadow_report(
        self,
        *,
        window_seconds: int = 0,
        worst: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.GetShadowReportResponse:
        """Shadow comparisons per task and model, the worst pairs and the shadow error rate
        (``GetShadowReport``; window 0: everything retained, worst 0: the default of 10)."""
        request = control_pb2.GetShadowReportRequest(window_seconds=window_seconds, worst=worst)
        return await self._unary(self._stub.GetShadowReport, request, options)

    async def evaluate_go_no_go(
        self, *, run_golden: bool = False, options: CallOptions | None = None
    ) -> control_pb2.EvaluateGoNoGoResponse:
        """The go/no-go gate for promotion to PHASE_PRIMARY, criterion by criterion
        (``EvaluateGoNoGo``); ``run_golden`` runs the golden queries first (slow: give the call
        a longer timeout)."""
        request = control_pb2.EvaluateGoNoGoRequest(run_golden=run_golden)
        return await self._unary(self._stub.EvaluateGoNoGo, request, options)

    # --- operator verbs -----------------------------------------------------------------------

    async def promote(
        self,
        *,
        full: bool = False,
        force: bool = False,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """One step forward, or straight to PHASE_PRIMARY with ``full`` (``Promote``). The step
        into PRIMARY needs the go/no-go gate to say GO, or ``force`` with a ``reason``."""
        request = control_pb2.PromoteRequest(
            meta=_meta(actor, reason, expected_version), full=full, force=force
        )
        return (await self._unary(self._stub.Promote, request, options)).snapshot

    async def set_weight(
        self,
        weight_percent: int,
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """The vLLM share of PHASE_SPLIT, 1..99 (``SetWeight``)."""
        request = control_pb2.SetWeightRequest(
            meta=_meta(actor, reason, expected_version), weight_percent=weight_percent
        )
        return (await self._unary(self._stub.SetWeight, request, options)).snapshot

    async def pause(
        self,
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Freezes the migration (``Pause``)."""
        request = control_pb2.PauseRequest(meta=_meta(actor, reason, expected_version))
        return (await self._unary(self._stub.Pause, request, options)).snapshot

    async def resume(
        self,
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Lifts a pause (``Resume``)."""
        request = control_pb2.ResumeRequest(meta=_meta(actor, reason, expected_version))
        return (await self._unary(self._stub.Resume, request, options)).snapshot

    async def abort(
        self,
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Sends all traffic to Ollama until retried (``Abort``)."""
        request = control_pb2.AbortRequest(meta=_meta(actor, reason, expected_version))
        return (await self._unary(self._stub.Abort, request, options)).snapshot

    async def retry(
        self,
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Leaves ABORTED for the phase and weight that were aborted (``Retry``)."""
        request = control_pb2.RetryRequest(meta=_meta(actor, reason, expected_version))
        return (await self._unary(self._stub.Retry, request, options)).snapshot

    async def undo(
        self,
        *,
        to_phase: control_pb2.Phase.ValueType = control_pb2.PHASE_UNSPECIFIED,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """One step back, or back to ``to_phase`` (``Undo``)."""
        request = control_pb2.UndoRequest(
            meta=_meta(actor, reason, expected_version), to_phase=to_phase
        )
        return (await self._unary(self._stub.Undo, request, options)).snapshot

    async def update_flags(
        self,
        flags: control_pb2.Flags,
        paths: Sequence[str],
        *,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Sets the ``Flags`` fields named by ``paths`` (e.g. ``rollback.error_rate``) to their
        values in ``flags`` (``UpdateFlags``)."""
        request = control_pb2.UpdateFlagsRequest(
            meta=_meta(actor, reason, expected_version),
            flags=flags,
            update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
        )
        return (await self._unary(self._stub.UpdateFlags, request, options)).snapshot

    # --- GPU telemetry and model selection ----------------------------------------------------

    async def get_gpu_status(self, *, options: CallOptions | None = None) -> control_pb2.GpuStatus:
        """The latest GPU telemetry sample, or why there is none (``GetGpuStatus``)."""
        request = control_pb2.GetGpuStatusRequest()
        return (await self._unary(self._stub.GetGpuStatus, request, options)).status

    async def watch_gpu_status(
        self, *, options: CallOptions | None = None
    ) -> AsyncIterator[control_pb2.GpuStatus]:
        """The latest sample, then one per poll, until the caller stops iterating
        (``WatchGpuStatus``). No deadline unless ``options.timeout`` sets one."""
        resolved = self._defaults.resolve(options, new_request_id())
        timeout = options.timeout if options is not None else None
        call = self._stub.WatchGpuStatus(
            control_pb2.WatchGpuStatusRequest(),
            timeout=timeout,
            metadata=resolved.metadata,
            wait_for_ready=resolved.wait_for_ready,
        )
        try:
            async for response in call:
                yield response.status
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def select_model(
        self,
        task: common_pb2.Task.ValueType,
        *,
        budget_bytes: int | None = None,
        provider: common_pb2.Provider.ValueType = common_pb2.PROVIDER_UNSPECIFIED,
        whole_catalog: bool = False,
        options: CallOptions | None = None,
    ) -> control_pb2.SelectModelResponse:
        """The largest candidate model of ``task`` that fits ``budget_bytes`` and the GPU's free
        memory less headroom (``SelectModel``); FAILED_PRECONDITION without either."""
        request = control_pb2.SelectModelRequest(
            task=task, provider=provider, whole_catalog=whole_catalog
        )
        if budget_bytes is not None:
            request.budget_bytes = budget_bytes
        return await self._unary(self._stub.SelectModel, request, options)

    async def set_task_model(
        self,
        task: common_pb2.Task.ValueType,
        model: str,
        *,
        force: bool = False,
        actor: str = "",
        reason: str = "",
        expected_version: int = 0,
        options: CallOptions | None = None,
    ) -> control_pb2.ConfigSnapshot:
        """Assigns ``model`` to ``task`` (``SetTaskModel``); a model that cannot fit on the GPU
        fails with FAILED_PRECONDITION unless ``force`` (which needs a ``reason``)."""
        request = control_pb2.SetTaskModelRequest(
            meta=_meta(actor, reason, expected_version), task=task, model=model, force=force
        )
        return (await self._unary(self._stub.SetTaskModel, request, options)).snapshot


def _meta(actor: str, reason: str, expected_version: int) -> control_pb2.ChangeMeta:
    return control_pb2.ChangeMeta(actor=actor, reason=reason, expected_version=expected_version)


def _defaults(
    token: str | None,
    timeout: float | None,
    metadata: Sequence[tuple[str, str]],
    wait_for_ready: bool,
) -> ClientDefaults:
    merged = [(k, v) for k, v in metadata if not token or k.lower() != "authorization"]
    if token:
        merged.append(("authorization", f"Bearer {token}"))
    return ClientDefaults(timeout, tuple(merged), wait_for_ready)
