"""Domain errors of the data path. No grpc import: ``grpc_errors`` maps these to statuses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from llmcore import errcap


class ErrorKind(enum.Enum):
    """What went wrong, in the router's terms; each maps to one proto ``ErrorCode``."""

    INVALID_REQUEST = "INVALID_REQUEST"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    FEATURE_UNSUPPORTED = "FEATURE_UNSUPPORTED"
    OVERLOADED = "OVERLOADED"
    LLM_UNAVAILABLE = "LLM_UNAVAILABLE"
    LLM_TIMEOUT = "LLM_TIMEOUT"
    LLM_INVALID_RESPONSE = "LLM_INVALID_RESPONSE"
    EMBEDDING_SERVICE_ERROR = "EMBEDDING_SERVICE_ERROR"
    ROUTER_INTERNAL = "ROUTER_INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field, named by its proto path (e.g. ``options.temperature``)."""

    field: str
    description: str


@dataclass
class RouterError(Exception):
    """A failure the caller sees as a typed gRPC status.

    ``retryable`` is whether another attempt at the same engine may succeed (connection refused,
    503, timeouts before the first byte); ``engine_down`` whether the whole engine looks down,
    so the fallback chain skips its other models.
    """

    kind: ErrorKind
    message: str
    provider: str = ""
    model: str = ""
    request_id: str = ""
    retryable: bool = False
    engine_down: bool = False
    http_status: int | None = None
    retry_after_s: float | None = None
    violations: tuple[FieldViolation, ...] = field(default_factory=tuple)
    # For EMBEDDING_SERVICE_ERROR: the underlying failure, which decides the gRPC code.
    cause: ErrorKind | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def invalid(violations: list[FieldViolation]) -> RouterError:
    """The INVALID_ARGUMENT error for a list of field violations: the first few named, the
    rest counted (``llmcore.errcap``: trailers stay far below 16 kB)."""
    kept = [
        FieldViolation(f, d) for f, d in errcap.capped((v.field, v.description) for v in violations)
    ]
    names = ", ".join(v.field for v in kept[:3])
    detail = "; ".join(f"{v.field}: {v.description}" for v in kept[:3])
    more = len(violations) - 3
    return RouterError(
        ErrorKind.INVALID_REQUEST,
        f"invalid request field(s) {names}: {detail}" + (f" (and {more} more)" if more > 0 else ""),
        violations=tuple(kept),
    )
