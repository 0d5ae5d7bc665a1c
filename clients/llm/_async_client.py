"""The async client: one typed method per RouterService RPC."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc
import grpc.aio

from clients.gen.llmgateway.v1 import router_pb2, router_pb2_grpc
from clients.llm._async_stream import GenerateStream
from clients.llm._channel import (
    ChannelOption,
    channel_options,
    request_id_baggage,
    tracing_interceptors,
)
from clients.llm._convert import (
    Features,
    MessageLike,
    build_embed_request,
    build_generate_request,
    embed_result_from_proto,
    new_request_id,
)
from clients.llm._enums import ProviderLike, ReasoningLevel, TaskLike
from clients.llm._errors import map_rpc_error
from clients.llm._features import ResponseFormat, Tool, ToolChoiceLike
from clients.llm._options import DEFAULT_TIMEOUT, CallOptions, ClientDefaults
from clients.llm._types import EmbedResult


class RouterClient:
    """Async client of the router's RouterService.

    ``RouterClient(target)`` opens (and :meth:`close` closes) its own channel;
    :meth:`from_channel` wraps a channel the caller owns. ``timeout``, ``metadata`` and
    ``wait_for_ready`` are the defaults every call's :class:`CallOptions` can override.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[ChannelOption] = (),
        tracer_provider: Any | None = None,
    ) -> None:
        """``tracer_provider`` (an OpenTelemetry ``TracerProvider``) traces every call and
        propagates the trace to the router; ``LLM_CLIENT_OTEL=true`` does the same with the
        OTel global provider."""
        merged = channel_options(options)
        interceptors = tracing_interceptors(tracer_provider)
        channel = (
            grpc.aio.secure_channel(target, credentials, options=merged, interceptors=interceptors)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=merged, interceptors=interceptors)
        )
        self._setup(channel, True, ClientDefaults(timeout, metadata, wait_for_ready))
        self._traced = bool(interceptors)

    @classmethod
    def from_channel(
        cls,
        channel: grpc.aio.Channel,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Sequence[tuple[str, str]] = (),
        wait_for_ready: bool = False,
    ) -> Self:
        """A client on ``channel``; :meth:`close` leaves the channel open."""
        client = cls.__new__(cls)
        client._setup(channel, False, ClientDefaults(timeout, metadata, wait_for_ready))
        return client

    def _setup(
        self, channel: grpc.aio.Channel, owns_channel: bool, defaults: ClientDefaults
    ) -> None:
        self._channel = channel
        self._traced = False
        self._owns_channel = owns_channel
        self._defaults = defaults
        self._stub = router_pb2_grpc.RouterServiceStub(channel)

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

    def generate(
        self,
        prompt: str | None = None,
        *,
        task: TaskLike | None = None,
        model: str | None = None,
        provider: ProviderLike | None = None,
        messages: Iterable[MessageLike] | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        request_id: str | None = None,
        routing_key: str | None = None,
        options: CallOptions | None = None,
        reasoning: ReasoningLevel | str | None = None,
        reasoning_budget: int | None = None,
        response_format: ResponseFormat | None = None,
        tools: Sequence[Tool] = (),
        tool_choice: ToolChoiceLike | None = None,
        engine_options: Mapping[str, object] | None = None,
        logprobs: bool = False,
        top_logprobs: int = 0,
    ) -> GenerateStream:
        """Starts a streamed completion (``Generate``); read it from the returned stream.

        The request id is generated when not given and sent in the request and as
        ``x-request-id`` metadata. Errors surface while reading the stream.
        """
        request_id = request_id or new_request_id()
        request = build_generate_request(
            request_id=request_id,
            prompt=prompt,
            messages=messages,
            system=system,
            task=task,
            model=model,
            provider=provider,
            routing_key=routing_key,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            features=Features(
                reasoning,
                reasoning_budget,
                response_format,
                tools,
                tool_choice,
                engine_options,
                logprobs,
                top_logprobs,
            ),
        )
        resolved = self._defaults.resolve(options, request_id)
        with request_id_baggage(self._traced, request_id):
            call = self._stub.Generate(
                request,
                timeout=resolved.timeout,
                metadata=resolved.metadata,
                wait_for_ready=resolved.wait_for_ready,
            )
        return GenerateStream(call, request_id)

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        model: str | None = None,
        provider: ProviderLike | None = None,
        request_id: str | None = None,
        routing_key: str | None = None,
        options: CallOptions | None = None,
        dimensions: int | None = None,
        truncate: bool | None = None,
    ) -> EmbedResult:
        """Embeds ``inputs`` (``Embed``); one vector per input, in order."""
        request_id = request_id or new_request_id()
        request = build_embed_request(
            request_id=request_id,
            inputs=inputs,
            model=model,
            provider=provider,
            routing_key=routing_key,
            dimensions=dimensions,
            truncate=truncate,
        )
        resolved = self._defaults.resolve(options, request_id)
        try:
            with request_id_baggage(self._traced, request_id):
                response = await self._stub.Embed(
                    request,
                    timeout=resolved.timeout,
                    metadata=resolved.metadata,
                    wait_for_ready=resolved.wait_for_ready,
                )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc, request_id=request_id) from exc
        return embed_result_from_proto(response)

    async def get_status(
        self, *, options: CallOptions | None = None
    ) -> router_pb2.GetStatusResponse:
        """The router's quick status (``GetStatus``): config version and state, engine probes."""
        resolved = self._defaults.resolve(options, new_request_id())
        try:
            return await self._stub.GetStatus(
                router_pb2.GetStatusRequest(),
                timeout=resolved.timeout,
                metadata=resolved.metadata,
                wait_for_ready=resolved.wait_for_ready,
            )
        except grpc.aio.AioRpcError as exc:
            raise map_rpc_error(exc) from exc
