"""The control service's errors as their own types, mapped from the gRPC status and the
service's ``google.rpc.ErrorInfo`` (domain ``llmgateway``; see ``control_service.grpc_errors``).

Every class derives from :class:`ControlError`, which derives from :class:`RouterError`, the
client library's one base for a failed call: code that catches ``RouterError`` (llmctl, the
drill, the benchmarks) keeps working, and new code can catch exactly what it handles::

    try:
        await client.promote(expected_version=seen)
    except VersionConflict as conflict:
        seen = conflict.current_version   # re-read and decide again
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.rpc import error_details_pb2

from clients.llm._errors import ERROR_DOMAIN, RouterError, code_and_message, decode_details


class ControlError(RouterError):
    """A call to the control service failed. ``reason`` is ErrorInfo's (``ILLEGAL_TRANSITION``,
    ``VERSION_CONFLICT``, ...), ``details`` its metadata; ``field_violations`` the BadRequest's."""

    def __init__(
        self,
        message: str,
        *,
        status_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str | None = None,
        details: Mapping[str, str] | None = None,
        field_violations: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            reason=reason,
            memos_code=(details or {}).get("code") or None,
            field_violations=field_violations or (),
        )
        self.details: dict[str, str] = dict(details or {})


class InvalidArgument(ControlError):
    """A request value, or the config it would produce, is invalid (INVALID_ARGUMENT);
    ``field_violations`` names each bad field."""


class IllegalTransition(ControlError):
    """The verb is not allowed in the current migration state (FAILED_PRECONDITION,
    ``ILLEGAL_TRANSITION``)."""


class PreconditionFailed(ControlError):
    """Valid, but the system's state refuses it (FAILED_PRECONDITION with another reason, e.g.
    a model that does not fit on the GPU); ``details["field"]`` names the request field."""


class VersionConflict(ControlError):
    """Compare-and-set lost: ``expected_version`` is not the current version (ABORTED);
    nothing changed."""

    @property
    def expected_version(self) -> int | None:
        return _int(self.details.get("expected_version"))

    @property
    def current_version(self) -> int | None:
        return _int(self.details.get("current_version"))


class NotAuthorised(ControlError):
    """No operator token, or not a valid one (UNAUTHENTICATED or PERMISSION_DENIED: see
    ``status_code``)."""


class ControlUnavailable(ControlError):
    """The control service (or its store) cannot be reached or cannot serve (UNAVAILABLE)."""


class ControlTimeout(ControlError):
    """The call ran past its deadline (DEADLINE_EXCEEDED)."""


_BY_STATUS: dict[grpc.StatusCode, type[ControlError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionFailed,
    grpc.StatusCode.ABORTED: VersionConflict,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthorised,
    grpc.StatusCode.PERMISSION_DENIED: NotAuthorised,
    grpc.StatusCode.UNAVAILABLE: ControlUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ControlTimeout,
}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def map_control_error(exc: grpc.RpcError) -> ControlError:
    """The typed error for a failed control call: by status code, refined by ErrorInfo's reason
    (FAILED_PRECONDITION is an :class:`IllegalTransition` when the reason says so)."""
    status_code, message = code_and_message(exc)
    details = decode_details(exc)
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    bad = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
    ours = info is not None and info.domain == ERROR_DOMAIN
    reason = (info.reason or None) if info is not None and ours else None
    error_type = _BY_STATUS.get(status_code, ControlError)
    if error_type is PreconditionFailed and reason == "ILLEGAL_TRANSITION":
        error_type = IllegalTransition
    return error_type(
        message,
        status_code=status_code,
        reason=reason,
        details=dict(info.metadata) if info is not None and ours else None,
        field_violations=[(v.field, v.description) for v in (bad.field_violations if bad else ())],
    )
