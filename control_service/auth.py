"""Bearer-token checks, in one place: a grpc.aio server interceptor.

* Mutating RPCs (every request carrying a ``ChangeMeta``, found from the descriptor) need
  ``authorization: Bearer <operator token>`` when an operator token is configured.
* ``RouterSession`` needs ``Bearer <router token>`` when a router token is configured.
* Read-only RPCs (GetState, ListEvents, GetHealth) and the standard health and reflection
  services are always open.

A missing header is UNAUTHENTICATED, a wrong token PERMISSION_DENIED. Tokens are compared in
constant time.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

from clients.gen.llmgateway.v1 import control_pb2

_SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
MUTATING_METHODS: frozenset[str] = frozenset(
    f"/{_SERVICE.full_name}/{m.name}"
    for m in _SERVICE.methods
    if "meta" in m.input_type.fields_by_name
)
SESSION_METHOD = f"/{_SERVICE.full_name}/RouterSession"


class AuthResult(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"


def check_bearer(metadata: Sequence[tuple[str, str | bytes]] | None, token: str) -> AuthResult:
    """Whether ``metadata`` carries ``authorization: Bearer <token>``."""
    values = [
        v.decode() if isinstance(v, bytes) else v
        for k, v in (metadata or ())
        if k.lower() == "authorization"
    ]
    if not values:
        return AuthResult.MISSING
    scheme, _, presented = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return AuthResult.MISSING
    ok = hmac.compare_digest(presented.strip().encode(), token.encode())
    return AuthResult.OK if ok else AuthResult.WRONG


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _deny(handler: Handler, code: grpc.StatusCode, message: str) -> Handler:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def stream(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(stream, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(unary, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, operator_token: str = "", router_token: str = "") -> None:
        self._operator_token = operator_token
        self._router_token = router_token

    def required_token(self, method: str) -> str:
        """The token ``method`` needs; empty when it is open."""
        if method in MUTATING_METHODS:
            return self._operator_token
        if method == SESSION_METHOD:
            return self._router_token
        return ""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        token = self.required_token(handler_call_details.method)
        handler = await continuation(handler_call_details)
        if not token or handler is None:
            return handler
        result = check_bearer(handler_call_details.invocation_metadata, token)
        if result is AuthResult.OK:
            return handler
        if result is AuthResult.MISSING:
            return _deny(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "this call needs 'authorization: Bearer <token>' metadata",
            )
        return _deny(handler, grpc.StatusCode.PERMISSION_DENIED, "the bearer token is not valid")
