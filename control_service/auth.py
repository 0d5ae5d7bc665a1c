"""The grpc.aio interceptor that applies ``control_service.authz`` to every ControlService call.

The check runs inside the wrapped handler, not in ``intercept_service``: only the servicer
context carries the TLS peer (``auth_context``), which mTLS identities come from. No usable
credential is UNAUTHENTICATED, a credential that may not make the call PERMISSION_DENIED.
Handlers ask :meth:`AuthInterceptor.principal` for the caller (the audit actor, the router id a
session may claim); it resolves the same credentials again, which is a few constant-time
compares, and keeps no per-call state.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from control_service.authz import Credentials, Denied, Principal, bearer_token

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def certificate_names(context: Context) -> list[str]:
    """The verified client certificate's common name, then its subject alternative names."""
    auth = context.auth_context()
    names: list[str] = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for raw in auth.get(key, ()):
            name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            if name and name not in names:
                names.append(name)
    return names


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def _resolve(self, method: str, context: Context) -> Principal | None:
        bearer = bearer_token(context.invocation_metadata())
        names = certificate_names(context) if self.credentials.mtls else []
        return self.credentials.authenticate(bearer, names, method)

    def principal(self, context: Context) -> Principal:
        """The caller of an admitted call (:data:`ANONYMOUS` in insecure mode without one)."""
        bearer = bearer_token(context.invocation_metadata())
        names = certificate_names(context) if self.credentials.mtls else []
        return self.credentials.identify(bearer, names)

    async def _check(self, method: str, context: Context) -> None:
        try:
            self._resolve(method, context)
        except Denied as denied:
            code = grpc.StatusCode.PERMISSION_DENIED
            if denied.unauthenticated:
                code = grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(denied))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _guarded(handler, handler_call_details.method, self._check)


def _guarded(
    handler: Handler, method: str, check: Callable[[str, Context], Awaitable[None]]
) -> Handler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            _wrap(handler.stream_stream, method, check), **kwargs
        )
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _wrap(handler.stream_unary, method, check), **kwargs
        )
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _wrap(handler.unary_stream, method, check), **kwargs
        )
    return grpc.unary_unary_rpc_method_handler(_wrap(handler.unary_unary, method, check), **kwargs)


def _wrap(
    inner: Any, method: str, check: Callable[[str, Context], Awaitable[None]]
) -> Callable[..., Any]:
    """The check, then ``inner``; an async generator stays one (the aio server, and the OTel
    interceptor before this one, tell streaming kinds apart by inspecting the function)."""
    if inspect.isasyncgenfunction(inner):

        async def gen(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(method, context)
            async for item in inner(request, context):
                yield item

        return gen

    async def call(request: Any, context: Context) -> Any:
        await check(method, context)
        result = inner(request, context)
        return await result if inspect.isawaitable(result) else result

    return call
