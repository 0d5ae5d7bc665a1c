"""Wrap a grpc.aio method handler so a check runs before its behaviour (the servers' auth and
decode guards). Kept in one place because the four streaming kinds must each stay what they
are: an async-generator behaviour must stay an async generator (the aio server and the OTel
interceptor tell the kinds apart by inspecting the function)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
# Receives the request (for client streaming: the request iterator) and the context; returns
# what the behaviour gets instead (the same request, a checked iterator), or aborts.
Before = Callable[[Any, Context], Awaitable[Any]]


def guarded(
    handler: Handler,
    before: Before,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """``handler`` with ``before`` awaited ahead of its behaviour (and, when given, another
    request deserializer)."""
    kwargs = {
        "request_deserializer": request_deserializer or handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_wrap(handler.stream_stream, before), **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_wrap(handler.stream_unary, before), **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_wrap(handler.unary_stream, before), **kwargs)
    return grpc.unary_unary_rpc_method_handler(_wrap(handler.unary_unary, before), **kwargs)


def _wrap(inner: Any, before: Before) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(inner):

        async def gen(request: Any, context: Context) -> AsyncIterator[Any]:
            request = await before(request, context)
            async for item in inner(request, context):
                yield item

        return gen

    async def call(request: Any, context: Context) -> Any:
        request = await before(request, context)
        result = inner(request, context)
        return await result if inspect.isawaitable(result) else result

    return call


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that wraps each method's handler with :meth:`guard`."""

    def guard(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        return None if handler is None else self.guard(handler, handler_call_details.method)
