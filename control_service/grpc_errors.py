"""The one place where control-service domain errors become gRPC statuses with rich details
(``google.rpc.ErrorInfo`` in domain "llmgateway", plus ``BadRequest`` field violations)."""

from __future__ import annotations

from typing import Any, cast

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from control_service.errors import (
    ControlError,
    InvalidChange,
    PreconditionFailed,
    StoreError,
    TransitionError,
    VersionConflict,
)

DOMAIN = "llmgateway"


def _pack(msg: Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def to_status(err: ControlError) -> grpc.Status:
    """INVALID_ARGUMENT (+ BadRequest), FAILED_PRECONDITION (+ PreconditionFailure for
    :class:`PreconditionFailed`), ABORTED or UNAVAILABLE."""
    metadata: dict[str, str] = {}
    details: list[any_pb2.Any] = []
    if isinstance(err, InvalidChange):
        code, reason = grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
        metadata["code"] = "ERR_4000"
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in err.violations
                    ]
                )
            )
        )
    elif isinstance(err, TransitionError):
        code, reason = grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION"
    elif isinstance(err, PreconditionFailed):
        code, reason = grpc.StatusCode.FAILED_PRECONDITION, err.reason
        metadata.update(err.metadata)
        metadata["field"] = err.subject
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=err.reason, subject=err.subject, description=str(err)
                        )
                    ]
                )
            )
        )
    elif isinstance(err, VersionConflict):
        code, reason = grpc.StatusCode.ABORTED, "VERSION_CONFLICT"
        metadata["expected_version"] = str(err.expected)
        metadata["current_version"] = str(err.current)
    elif isinstance(err, StoreError):
        code, reason = grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"
    else:
        code, reason = grpc.StatusCode.INTERNAL, "CONTROL_INTERNAL"
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=str(err), details=[_pack(info), *details]
    )
    return cast(grpc.Status, rpc_status.to_status(status))
