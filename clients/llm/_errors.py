"""Typed errors, and the one function that maps a gRPC error status onto them.

The router attaches a ``google.rpc.ErrorInfo`` (domain ``llmgateway``) to every error status,
plus a ``BadRequest`` for invalid arguments and a ``RetryInfo`` when it sheds load. Statuses
without details (the caller's own deadline, a cancelled call, an unreachable router) still map
to a typed error, chosen by the status code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from clients.llm._enums import ErrorCode, parse_error_code

ERROR_DOMAIN = "llmgateway"
"""``ErrorInfo.domain`` of the router's errors."""


class RouterError(Exception):
    """A call to the router failed; subclasses say how.

    ``code``/``memos_code``/``provider``/``model`` come from the router's ``ErrorInfo`` and are
    None when the status carried none (e.g. the client's own deadline). ``request_id`` falls back
    to the id the client sent. ``partial_text`` is the text a generate stream had produced before
    it failed ("" otherwise).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        code: ErrorCode | None = None,
        reason: str | None = None,
        memos_code: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
        retry_after: float | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.reason = reason
        self.memos_code = memos_code
        self.provider = provider
        self.model = model
        self.request_id = request_id
        self.field_violations = list(field_violations)
        self.retry_after = retry_after
        self.partial_text = partial_text

    def __str__(self) -> str:
        label = self.code.name if self.code is not None else (self.reason or self.status_code.name)
        head = label if self.memos_code is None else f"{label} {self.memos_code}"
        if label != self.status_code.name:
            head += f" (grpc {self.status_code.name})"
        text = f"{head}: {self.message}" if self.message else head
        context = [
            f"{name}={value}"
            for name, value in (
                ("provider", self.provider),
                ("model", self.model),
                ("request_id", self.request_id),
            )
            if value
        ]
        if self.retry_after is not None:
            context.append(f"retry_after={self.retry_after:g}s")
        if context:
            text += f" [{' '.join(context)}]"
        # The router's message usually lists the violations already; add only what it lacks.
        missing = [f"{f}: {d}" for f, d in self.field_violations if f"{f}: {d}" not in self.message]
        if missing:
            text += "; invalid " + "; ".join(missing)
        return text


class InvalidRequestError(RouterError):
    """A request field is invalid (INVALID_ARGUMENT); ``field_violations`` names it."""


class ModelNotFoundError(RouterError):
    """No engine knows the requested model (NOT_FOUND)."""


class FeatureUnsupportedError(RouterError):
    """No engine or model that could serve the request can do what it asks: thinking, tools,
    images, an engine option (FAILED_PRECONDITION); the message names the field."""


class LLMUnavailableError(RouterError):
    """The engine (or the router) cannot be reached or refused (UNAVAILABLE, ERR_5001)."""


class LLMTimeoutError(RouterError):
    """The call ran past its deadline (DEADLINE_EXCEEDED, ERR_5002)."""


class LLMInvalidResponseError(RouterError):
    """The engine's answer was malformed or failed mid-stream (INTERNAL/DATA_LOSS, ERR_5003)."""


class EmbeddingServiceError(RouterError):
    """An embed call failed in the engine (ERR_5004)."""


class OverloadedError(RouterError):
    """The router shed the request (RESOURCE_EXHAUSTED); see ``retry_after``."""


class RouterInternalError(RouterError):
    """A fault in the router itself, not the engine (INTERNAL, ERR_5000)."""


class RequestCancelledError(RouterError):
    """The call was cancelled (CANCELLED)."""


_BY_CODE: dict[ErrorCode, type[RouterError]] = {
    ErrorCode.INVALID_REQUEST: InvalidRequestError,
    ErrorCode.MODEL_NOT_FOUND: ModelNotFoundError,
    ErrorCode.FEATURE_UNSUPPORTED: FeatureUnsupportedError,
    ErrorCode.OVERLOADED: OverloadedError,
    ErrorCode.ROUTER_INTERNAL: RouterInternalError,
    ErrorCode.LLM_UNAVAILABLE: LLMUnavailableError,
    ErrorCode.LLM_TIMEOUT: LLMTimeoutError,
    ErrorCode.LLM_INVALID_RESPONSE: LLMInvalidResponseError,
    ErrorCode.EMBEDDING_SERVICE_ERROR: EmbeddingServiceError,
}

_BY_STATUS: dict[grpc.StatusCode, type[RouterError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FeatureUnsupportedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.UNAVAILABLE: LLMUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: LLMTimeoutError,
    grpc.StatusCode.INTERNAL: LLMInvalidResponseError,
    grpc.StatusCode.DATA_LOSS: LLMInvalidResponseError,
    grpc.StatusCode.CANCELLED: RequestCancelledError,
}


def map_rpc_error(
    exc: grpc.RpcError, *, request_id: str | None = None, partial_text: str = ""
) -> RouterError:
    """The typed error for a failed call (``grpc.aio.AioRpcError`` or a sync ``grpc.RpcError``).

    The class comes from the ``ErrorInfo`` code when the router sent one it knows, else from the
    status code. ``request_id`` is used when the status does not name one.
    """
    status_code, message = code_and_message(exc)
    details = decode_details(exc)
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    bad_request = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
    retry = next((d for d in details if isinstance(d, error_details_pb2.RetryInfo)), None)

    code: ErrorCode | None = None
    reason: str | None = None
    metadata: dict[str, str] = {}
    if info is not None and info.domain == ERROR_DOMAIN:
        reason = info.reason or None
        code = parse_error_code(info.reason)
        metadata = dict(info.metadata)

    error_type = _BY_CODE.get(code) if code is not None else None
    if error_type is None:
        error_type = _BY_STATUS.get(status_code, RouterError)
    return error_type(
        message,
        status_code=status_code,
        code=code,
        reason=reason,
        memos_code=metadata.get("code") or None,
        provider=metadata.get("provider") or None,
        model=metadata.get("model") or None,
        request_id=metadata.get("request_id") or request_id,
        field_violations=[
            (v.field, v.description) for v in (bad_request.field_violations if bad_request else ())
        ],
        retry_after=retry.retry_delay.ToTimedelta().total_seconds() if retry is not None else None,
        partial_text=partial_text,
    )


def code_and_message(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    # A bare grpc.RpcError (not a grpc.Call) has no code(); grpc itself never raises one from a
    # call, but a test double or interceptor might.
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    code = code_fn() if callable(code_fn) else None
    message = details_fn() if callable(details_fn) else None
    return (
        code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
        message if isinstance(message, str) else str(exc),
    )


_DetailMessage: TypeAlias = (
    error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo
)


def decode_details(exc: grpc.RpcError) -> list[_DetailMessage]:
    """The rich-status details the client understands; [] when there are none or they are bad."""
    if not callable(getattr(exc, "trailing_metadata", None)):
        return []
    try:
        status: status_pb2.Status | None = rpc_status.from_call(exc)
    except (ValueError, DecodeError):
        # from_call raises ValueError when the details disagree with the status line; a
        # status we cannot trust is treated as one without details.
        return []
    if status is None:
        return []
    decoded: list[_DetailMessage] = []
    for detail in status.details:
        for message_type in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(message_type.DESCRIPTOR):
                message = message_type()
                detail.Unpack(message)
                decoded.append(message)
                break
    return decoded
