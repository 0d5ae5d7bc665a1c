"""Rich gRPC statuses (``google.rpc.Status`` with typed details) built one way for both services.

Each service keeps its own mapping from its domain errors to a code and a reason; this module only
packs: an ``ErrorInfo`` in the project's domain first (clients read ``reason`` and ``metadata``
from it), then whatever detail messages apply (``BadRequest`` field violations, ``RetryInfo``,
``PreconditionFailure``), into the ``grpc-status-details-bin`` trailer ``grpc_status`` sends.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Protocol, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "llmgateway"


class FieldViolation(Protocol):
    """What both services' violation records have: the offending field and why."""

    @property
    def field(self) -> str: ...

    @property
    def description(self) -> str: ...


def bad_request(violations: Iterable[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: Mapping[str, str],
    details: Iterable[Message] = (),
    trailers: Iterable[tuple[str, str]] = (),
) -> grpc.Status:
    """A ``grpc.Status`` (for ``context.abort_with_status``) whose details are an ``ErrorInfo``
    (``reason``, domain "llmgateway", ``metadata``) followed by ``details``. ``trailers`` are
    sent with it: ``abort_with_status`` replaces any trailing metadata set on the call before,
    so what must survive an error (``x-request-id``) goes here."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    packed = []
    for msg in (info, *details):
        any_msg = any_pb2.Any()
        any_msg.Pack(msg)
        packed.append(any_msg)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=packed)
    rich = cast(grpc.Status, rpc_status.to_status(status))
    extra = tuple(trailers)
    if not extra:
        return rich
    return _Status(rich.code, rich.details, (*rich.trailing_metadata, *extra))


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A ``grpc.Status`` with our trailers (grpc_status's own type is private)."""
