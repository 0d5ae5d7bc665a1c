"""The one place where control-service domain errors become gRPC statuses with rich details
(``google.rpc.ErrorInfo`` in domain "llmgateway", plus ``BadRequest`` field violations)."""

from __future__ import annotations

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from control_service.errors import (
    ControlError,
    InvalidChange,
    NotLeader,
    PreconditionFailed,
    StoreError,
    TransitionError,
    VersionConflict,
)
from llmcore.rich_status import bad_request, rich_status


def to_status(err: ControlError) -> grpc.Status:
    """INVALID_ARGUMENT (+ BadRequest), FAILED_PRECONDITION (+ PreconditionFailure for
    :class:`PreconditionFailed`), ABORTED or UNAVAILABLE."""
    metadata: dict[str, str] = {}
    details: list[Message] = []
    if isinstance(err, InvalidChange):
        code, reason = grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
        metadata["code"] = "ERR_4000"
        details.append(bad_request(err.violations))
    elif isinstance(err, TransitionError):
        code, reason = grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION"
    elif isinstance(err, PreconditionFailed):
        code, reason = grpc.StatusCode.FAILED_PRECONDITION, err.reason
        metadata.update(err.metadata)
        metadata["field"] = err.subject
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=err.reason, subject=err.subject, description=str(err)
                    )
                ]
            )
        )
    elif isinstance(err, VersionConflict):
        code, reason = grpc.StatusCode.ABORTED, "VERSION_CONFLICT"
        metadata["expected_version"] = str(err.expected)
        metadata["current_version"] = str(err.current)
    elif isinstance(err, NotLeader):
        # Transient: llmctl and the client library retry at metadata["leader_address"].
        code, reason = grpc.StatusCode.UNAVAILABLE, "NOT_LEADER"
        metadata["leader_address"] = err.leader_address
        metadata["leader_id"] = err.leader_id
    elif isinstance(err, StoreError) and err.exhausted:
        code, reason = grpc.StatusCode.RESOURCE_EXHAUSTED, "STORE_FULL"
    elif isinstance(err, StoreError):
        code, reason = grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"
    else:
        code, reason = grpc.StatusCode.INTERNAL, "CONTROL_INTERNAL"
    return rich_status(code, str(err), reason, metadata, details)
