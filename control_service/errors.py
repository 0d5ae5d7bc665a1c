"""Domain errors of the control service. No grpc import: ``grpc_errors`` maps them to statuses.

* :class:`InvalidChange` - a value is out of range or the resulting config is inconsistent
  (INVALID_ARGUMENT, one :class:`FieldViolation` per bad field).
* :class:`TransitionError` - the verb is illegal in the current migration state
  (FAILED_PRECONDITION with the reason).
* :class:`VersionConflict` - compare-and-set failed (ABORTED; nothing changed).
* :class:`PreconditionFailed` - valid, but the system's state refuses it (FAILED_PRECONDITION
  with an ErrorInfo reason and a ``PreconditionFailure`` naming the field).
* :class:`NotLeader` - a mutation reached a replica that is not the leader, or a former leader
  whose write was fenced (UNAVAILABLE, ErrorInfo ``NOT_LEADER`` with the leader's address).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmcore import errcap


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field, named by its proto path (e.g. ``flags.rollback.error_rate``)."""

    field: str
    description: str


class ControlError(Exception):
    """Base of every error the control service reports to a caller."""


class InvalidChange(ControlError):
    """The change, or the whole config it would produce, is invalid."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations: tuple[FieldViolation, ...] = capped(violations)
        detail = "; ".join(f"{v.field}: {v.description}" for v in self.violations[:3])
        more = len(self.violations) - 3
        super().__init__(f"invalid change: {detail}" + (f" (and {more} more)" if more > 0 else ""))


def capped(violations: Iterable[FieldViolation]) -> tuple[FieldViolation, ...]:
    """At most ``llmcore.errcap.MAX_VIOLATIONS`` violations, cut short, plus one counting the
    rest (trailers stay far below 16 kB whatever the request)."""
    return tuple(
        FieldViolation(f, d) for f, d in errcap.capped((v.field, v.description) for v in violations)
    )


class TransitionError(ControlError):
    """The verb is not allowed in the current migration state; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class VersionConflict(ControlError):
    """``expected_version`` is not the current version."""

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"expected version {expected} but the current version is {current}; "
            "re-read the state and retry"
        )


class PreconditionFailed(ControlError):
    """The request is valid but the system's state refuses it (FAILED_PRECONDITION), e.g. a
    model that does not fit on the GPU. ``reason`` is the ErrorInfo reason, ``subject`` the
    request field it is about; ``metadata`` goes into ErrorInfo."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        subject: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.reason = reason
        self.subject = subject
        self.metadata: dict[str, str] = dict(metadata or {})
        super().__init__(message)


class StoreError(ControlError):
    """The store is unusable (corrupt, newer schema than this build knows, closed, locked by
    another writer, a failed write). ``exhausted``: the disk (or the store's size cap) is full,
    RESOURCE_EXHAUSTED rather than UNAVAILABLE."""

    def __init__(self, message: str, *, exhausted: bool = False) -> None:
        super().__init__(message)
        self.exhausted = exhausted


class NotLeader(StoreError):
    """This replica may not write: it is a follower, or a former leader whose leadership key is
    no longer its own (fenced). ``leader_address`` (empty while no leader is known) is where
    clients send the mutation instead."""

    def __init__(self, message: str, *, leader_id: str = "", leader_address: str = "") -> None:
        self.leader_id = leader_id
        self.leader_address = leader_address
        super().__init__(message)
