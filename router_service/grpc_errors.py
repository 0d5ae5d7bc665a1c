"""The one place where domain errors become gRPC statuses with rich details."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from clients.gen.llmgateway.v1 import common_pb2
from llmcore.rich_status import bad_request, rich_status
from router_service.errors import ErrorKind, RouterError

_STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.MODEL_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.FEATURE_UNSUPPORTED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.LLM_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.LLM_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.LLM_INVALID_RESPONSE: grpc.StatusCode.INTERNAL,
    ErrorKind.EMBEDDING_SERVICE_ERROR: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.ROUTER_INTERNAL: grpc.StatusCode.INTERNAL,
}
_CODE: dict[ErrorKind, common_pb2.ErrorCode.ValueType] = {
    ErrorKind.INVALID_REQUEST: common_pb2.ERROR_CODE_INVALID_REQUEST,
    ErrorKind.MODEL_NOT_FOUND: common_pb2.ERROR_CODE_MODEL_NOT_FOUND,
    ErrorKind.FEATURE_UNSUPPORTED: common_pb2.ERROR_CODE_FEATURE_UNSUPPORTED,
    ErrorKind.OVERLOADED: common_pb2.ERROR_CODE_OVERLOADED,
    ErrorKind.LLM_UNAVAILABLE: common_pb2.ERROR_CODE_LLM_UNAVAILABLE,
    ErrorKind.LLM_TIMEOUT: common_pb2.ERROR_CODE_LLM_TIMEOUT,
    ErrorKind.LLM_INVALID_RESPONSE: common_pb2.ERROR_CODE_LLM_INVALID_RESPONSE,
    ErrorKind.EMBEDDING_SERVICE_ERROR: common_pb2.ERROR_CODE_EMBEDDING_SERVICE_ERROR,
    ErrorKind.ROUTER_INTERNAL: common_pb2.ERROR_CODE_ROUTER_INTERNAL,
}
_PREFIX = "ERROR_CODE_"


def status_code(err: RouterError) -> grpc.StatusCode:
    return _STATUS[err.cause or err.kind]


def to_status(err: RouterError) -> grpc.Status:
    """A ``grpc.Status`` carrying ErrorInfo (+ BadRequest / RetryInfo where they apply)."""
    code = status_code(err)
    value = _CODE[err.kind]
    name = common_pb2.ErrorCode.Name(value)
    metadata = {
        "code": f"ERR_{value}",
        "provider": err.provider,
        "model": err.model,
        "request_id": err.request_id,
    }
    details: list[Message] = []
    if err.violations:
        details.append(bad_request(err.violations))
    if err.retry_after_s is not None and code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ):
        frac, whole = math.modf(err.retry_after_s)
        details.append(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=int(whole), nanos=int(frac * 1e9))
            )
        )
    # abort_with_status replaces every trailing metadata set earlier on the call with the
    # status's own: the request id and the seed's code travel in it, next to the details.
    trailers = (("x-request-id", err.request_id), ("x-error-code", f"ERR_{value}"))
    return rich_status(code, err.message, name.removeprefix(_PREFIX), metadata, details, trailers)


async def abort(context: grpc.aio.ServicerContext[Any, Any], err: RouterError, rid: str) -> None:
    """The one way a router call fails: ``err`` as a rich status whose trailers keep
    ``x-request-id`` and ``x-error-code`` (ERR_5xxx). Raises (grpc ends the call)."""
    err.request_id = err.request_id or rid
    await context.abort_with_status(to_status(err))
