"""The async client of the control service's operator RPCs (what ``llmctl`` and tools use)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import grpc
import grpc.aio
from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from clients.gen.llmgateway.v1 import common_pb2, control_pb2, control_pb2_grpc
from clients.llm._channel import ChannelOption, channel_options
from clients.llm._control_errors import map_control_error
from clients.llm._convert import new_request_id
from clients.llm._failover import leader_hint, next_target, split_targets
from clients.llm._options import CallOptions, ClientDefaults, ResolvedCallOptions

DEFAULT_CONTROL_TIMEOUT = 10.0
"""Seconds a control call may take unless the client or the call says otherwise."""

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
# The router's stream, not an operator call: routers use their own session client.
ROUTER_ONLY_RPCS = frozenset({"RouterSession"})
_METHODS: dict[str, MethodDescriptor] = {m.name: m for m in SERVICE.methods}
_RPC_BY_INPUT: dict[str, str] = {m.input_type.full_name: m.name for m in SERVICE.methods}


class ChangeArgs(TypedDict, total=False):
    """The keyword arguments every mutating verb takes (its ``ChangeMeta`` and call options)."""

    actor: str
    """Who (the audit log's actor)."""
    reason: str
    """Why (recorded in the audit log)."""
    expected_version: int
    """Compare-and-set: non-zero fails the call (VersionConflict) unless still at this version."""
    options: CallOptions | None
    """Timeout, metadata (an ``authorization`` entry replaces the client's token), ..."""


class ControlClient:
    """Async client of the control service's ``ControlService`` (all RPCs but RouterSession).

    ``token`` is sent as ``authorization: Bearer <token>`` on every call (mutating RPCs need it
    when the service has an operator token). Mutating methods take the ``ChangeMeta`` fields as
    keyword arguments (:class:`ChangeArgs`): ``expected_version`` non-zero makes the call a
    compare-and-set. Methods return the response's ``ConfigSnapshot`` (or the whole response
    for reads); every unary RPC goes through :meth:`call`. Failures raise
    :class:`clients.llm.ControlError` subclasses: InvalidArgument (with ``field_violations``),
    IllegalTransition, PreconditionFailed, VersionConflict, NotAuthorised, ControlUnavailable,
    ControlTimeout (all of them RouterErrors, whose ``status_code`` says the gRPC status).

    ``target`` may list several replicas, comma-separated: a call refused by a follower
    (NOT_LEADER) goes to the leader it names, and an unreachable replica is skipped for the next
    one (clients.llm._failover).
    """

    _targets: list[str]  # the replicas (``target`` split at commas); empty: from_channel
    _dial: Callable[[str], grpc.aio.Channel] | None

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

        def dial(address: str) -> grpc.aio.Channel:
            return (
                grpc.aio.secure_channel(address, credentials, options=merged)
                if credentials is not None
                else grpc.aio.insecure_channel(address, options=merged)
            )

        # ``target`` may name several replicas (``a:1,b:2``): see clients.llm._failover.
        self._targets = split_targets(target)
        self._dial = dial
        self._setup(
            dial(self._targets[0]), True, _defaults(token, timeout, metadata, wait_for_ready)
        )

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
        client._targets, client._dial = [], None
        client._setup(channel, False, _defaults(token, timeout, metadata, wait_for_ready))
        return client

    def _setup(
        self, channel: grpc.aio.Channel, owns_channel: bool, defaults: ClientDefaults
    ) -> None:
        self._channel = channel
        self._owns_channel = owns_channel
        self._defaults = defaults
        self._stub = control_pb2_grpc.ControlServiceStub(channel)
        self._current = 0
        self._channels: dict[int, grpc.aio.Channel] = {0: channel}
        self._stubs: dict[int, control_pb2_grpc.ControlServiceAsyncStub] = {0: self._stub}

    def _use(self, index: int) -> None:
        """Make ``self._targets[index]`` the replica calls go to (dialled once, then kept)."""
        if index not in self._channels:
            assert self._dial is not None
            self._channels[index] = self._dial(self._targets[index])
            self._stubs[index] = control_pb2_grpc.ControlServiceStub(self._channels[index])
        self._current = index
        self._channel = self._channels[index]
        self._stub = self._stubs[index]

    @property
    def target(self) -> str:
        """The address calls go to now (after any failover); "" for a client on a channel."""
        return self._targets[self._current] if self._targets else ""

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel calls go through."""
        return self._channel

    async def close(self) -> None:
        """Closes the channel if the client opened it."""
        if self._owns_channel:
            for channel in self._channels.values():
                await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def call(self, rpc: str, request: Message, options: CallOptions | None = None) -> Message:
        """The one path every unary RPC takes: ``rpc`` by its proto name (``"Promote"``), the
        client's defaults merged with ``options`` (a call's ``authorization`` metadata replaces
        the client's token), failures as :class:`ControlError` subclasses."""
        method = _METHODS[rpc]
        if request.DESCRIPTOR.full_name != method.input_type.full_name:
            raise TypeError(f"{rpc} takes {method.input_type.name}, not {request.DESCRIPTOR.name}")
        resolved = self._resolve(options)
        # Several replicas: a refusal naming the leader, or an unreachable replica, moves the
        # call to another one (clients.llm._failover), the same RPC on that replica's stub.
        tries = 1 + 2 * max(2, len(self._targets)) if self._targets else 1
        for attempt in range(tries):
            stub_method: Callable[..., Awaitable[Message]] = getattr(self._stub, rpc)
            try:
                return await stub_method(
                    request,
                    timeout=resolved.timeout,
                    metadata=resolved.metadata,
                    wait_for_ready=resolved.wait_for_ready,
                )
            except grpc.aio.AioRpcError as exc:
                index = (
                    next_target(exc, rpc, self._targets, self._current)
                    if self._targets and attempt + 1 < tries
                    else None
                )
                if index is None:
                    raise map_control_error(exc) from exc
                if index == self._current or not leader_hint(exc):
                    # No leader named (unreachable, or an election under way): back off.
                    await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
                self._use(index)
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve(self, options: CallOptions | None) -> ResolvedCallOptions:
        defaults = self._defaults
        if options is not None and any(k.lower() == "authorization" for k, _ in options.metadata):
            kept = [(k, v) for k, v in defaults.metadata if k.lower() != "authorization"]
            defaults = replace(defaults, metadata=tuple(kept))
        return defaults.resolve(options, new_request_id())

    async def _read(self, rpc: str, request: Message, options: CallOptions | None) -> Any:
        return await self.call(rpc, request, options)

    async def _change(self, request: Message, change: ChangeArgs) -> control_pb2.ConfigSnapshot:
        """A mutating RPC: ``change``'s ChangeMeta fields into ``request.meta``; the snapshot the
        service accepted."""
        meta = control_pb2.ChangeMeta(
            actor=change.get("actor", ""),
            reason=change.get("reason", ""),
            expected_version=change.get("expected_version", 0),
        )
        request.meta.CopyFrom(meta)  # type: ignore[attr-defined]
        rpc = _RPC_BY_INPUT[request.DESCRIPTOR.full_name]
        response = await self.call(rpc, request, change.get("options"))
        return response.snapshot  # type: ignore[attr-defined,no-any-return]

    # --- reads --------------------------------------------------------------------------------

    async def get_state(
        self, *, options: CallOptions | None = None
    ) -> control_pb2.GetStateResponse:
        """The current snapshot and every router the service has seen (``GetState``)."""
        return await self._read("GetState", control_pb2.GetStateRequest(), options)  # type: ignore[no-any-return]

    async def list_events(
        self, *, page_size: int = 0, before_version: int = 0, options: CallOptions | None = None
    ) -> control_pb2.ListEventsResponse:
        """One page of the audit log, newest first (``ListEvents``; 0 page size means 50)."""
        request = control_pb2.ListEventsRequest(page_size=page_size, before_version=before_version)
        return await self._read("ListEvents", request, options)  # type: ignore[no-any-return]

    async def get_health(
        self, *, options: CallOptions | None = None
    ) -> control_pb2.GetHealthResponse:
        """The aggregate health of the store, the routers and the engines (``GetHealth``)."""
        return await self._read("GetHealth", control_pb2.GetHealthRequest(), options)  # type: ignore[no-any-return]

    async def get_shadow_report(
        self,
        *,
        window_seconds: int = 0,
        worst: int = 0,
        by_episode: bool = False,
        options: CallOptions | None = None,
    ) -> control_pb2.GetShadowReportResponse:
        """Shadow comparisons per task and model, the worst pairs and the shadow error rate
        (``GetShadowReport``; window 0: everything retained, worst 0: the default of 10;
        ``by_episode`` adds one entry per memOS query)."""
        request = control_pb2.GetShadowReportRequest(
            window_seconds=window_seconds, worst=worst, by_episode=by_episode
        )
        return await self._read("GetShadowReport", request, options)  # type: ignore[no-any-return]

    async def evaluate_go_no_go(
        self, *, run_golden: bool = False, options: CallOptions | None = None
    ) -> control_pb2.EvaluateGoNoGoResponse:
        """The go/no-go gate for promotion to PHASE_PRIMARY, criterion by criterion
        (``EvaluateGoNoGo``); ``run_golden`` runs the golden queries first (slow: give the call
        a longer timeout)."""
        request = control_pb2.EvaluateGoNoGoRequest(run_golden=run_golden)
        return await self._read("EvaluateGoNoGo", request, options)  # type: ignore[no-any-return]

    # --- operator verbs: keyword arguments are ChangeArgs (actor, reason, expected_version:
    # non-zero makes the call a compare-and-set, options) ---------------------------------------

    async def promote(
        self, *, full: bool = False, force: bool = False, **change: Unpack[ChangeArgs]
    ) -> control_pb2.ConfigSnapshot:
        """One step forward, or straight to PHASE_PRIMARY with ``full`` (``Promote``). The step
        into PRIMARY needs the go/no-go gate to say GO, or ``force`` with a ``reason``."""
        return await self._change(control_pb2.PromoteRequest(full=full, force=force), change)

    async def set_weight(
        self, weight_percent: int, **change: Unpack[ChangeArgs]
    ) -> control_pb2.ConfigSnapshot:
        """The vLLM share of PHASE_SPLIT, 1..99 (``SetWeight``)."""
        request = control_pb2.SetWeightRequest(weight_percent=weight_percent)
        return await self._change(request, change)

    async def pause(self, **change: Unpack[ChangeArgs]) -> control_pb2.ConfigSnapshot:
        """Freezes the migration (``Pause``)."""
        return await self._change(control_pb2.PauseRequest(), change)

    async def resume(self, **change: Unpack[ChangeArgs]) -> control_pb2.ConfigSnapshot:
        """Lifts a pause (``Resume``)."""
        return await self._change(control_pb2.ResumeRequest(), change)

    async def abort(self, **change: Unpack[ChangeArgs]) -> control_pb2.ConfigSnapshot:
        """Sends all traffic to Ollama until retried (``Abort``)."""
        return await self._change(control_pb2.AbortRequest(), change)

    async def retry(self, **change: Unpack[ChangeArgs]) -> control_pb2.ConfigSnapshot:
        """Leaves ABORTED for the phase and weight that were aborted (``Retry``)."""
        return await self._change(control_pb2.RetryRequest(), change)

    async def undo(
        self,
        *,
        to_phase: control_pb2.Phase.ValueType = control_pb2.PHASE_UNSPECIFIED,
        **change: Unpack[ChangeArgs],
    ) -> control_pb2.ConfigSnapshot:
        """One step back, or back to ``to_phase`` (``Undo``)."""
        return await self._change(control_pb2.UndoRequest(to_phase=to_phase), change)

    async def update_flags(
        self,
        flags: control_pb2.Flags,
        paths: Sequence[str],
        *,
        force: bool = False,
        **change: Unpack[ChangeArgs],
    ) -> control_pb2.ConfigSnapshot:
        """Sets the ``Flags`` fields named by ``paths`` (e.g. ``rollback.error_rate``) to their
        values in ``flags`` (``UpdateFlags``). Moving ``embedding_provider`` off Ollama needs a
        passed embedding parity measurement, or ``force`` with a reason naming the re-index."""
        mask = field_mask_pb2.FieldMask(paths=list(paths))
        request = control_pb2.UpdateFlagsRequest(flags=flags, update_mask=mask, force=force)
        return await self._change(request, change)

    async def measure_embedding_parity(
        self,
        texts: Sequence[str] = (),
        *,
        k: int = 0,
        sample: int = 0,
        **change: Unpack[ChangeArgs],
    ) -> control_pb2.MeasureEmbeddingParityResponse:
        """Embeds ``texts`` (empty: the service's corpus) on both engines and compares them
        (``MeasureEmbeddingParity``): per-text cosine, nearest-neighbour overlap@k, pass/fail.
        Audited; a pass lets ``embedding_provider`` move to vLLM."""
        request = control_pb2.MeasureEmbeddingParityRequest(texts=list(texts), k=k, sample=sample)
        request.meta.CopyFrom(
            control_pb2.ChangeMeta(
                actor=change.get("actor", ""),
                reason=change.get("reason", ""),
                expected_version=change.get("expected_version", 0),
            )
        )
        response = await self.call("MeasureEmbeddingParity", request, change.get("options"))
        assert isinstance(response, control_pb2.MeasureEmbeddingParityResponse)
        return response

    # --- GPU telemetry and model selection ----------------------------------------------------

    async def get_gpu_status(self, *, options: CallOptions | None = None) -> control_pb2.GpuStatus:
        """The latest GPU telemetry sample, or why there is none (``GetGpuStatus``)."""
        request = control_pb2.GetGpuStatusRequest()
        return (await self._read("GetGpuStatus", request, options)).status  # type: ignore[no-any-return]

    async def watch_gpu_status(
        self, *, options: CallOptions | None = None
    ) -> AsyncIterator[control_pb2.GpuStatus]:
        """The latest sample, then one per poll, until the caller stops iterating
        (``WatchGpuStatus``). No deadline unless ``options.timeout`` sets one."""
        resolved = self._resolve(options)
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
            raise map_control_error(exc) from exc
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
        return await self._read("SelectModel", request, options)  # type: ignore[no-any-return]

    async def set_task_model(
        self,
        task: common_pb2.Task.ValueType,
        model: str,
        *,
        force: bool = False,
        **change: Unpack[ChangeArgs],
    ) -> control_pb2.ConfigSnapshot:
        """Assigns ``model`` to ``task`` (``SetTaskModel``); a model that cannot fit on the GPU
        fails with FAILED_PRECONDITION unless ``force`` (which needs a ``reason``)."""
        request = control_pb2.SetTaskModelRequest(task=task, model=model, force=force)
        return await self._change(request, change)

    async def list_engines(
        self, options: CallOptions | None = None
    ) -> control_pb2.ListEnginesResponse:
        """Every engine-pool replica with health, load and prefix-cache hit rate
        (``ListEngines``)."""
        request = control_pb2.ListEnginesRequest()
        return await self._read("ListEngines", request, options)  # type: ignore[no-any-return]

    async def drain_replica(
        self, url: str, *, undrain: bool = False, **change: Unpack[ChangeArgs]
    ) -> control_pb2.ConfigSnapshot:
        """Drains (``undrain``: undrains) one replica on every router (``DrainReplica``): no new
        requests, requests in flight finish."""
        request = control_pb2.DrainReplicaRequest(url=url, undrain=undrain)
        return await self._change(request, change)


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
