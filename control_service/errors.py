"""Domain errors of the control service. No grpc import: ``grpc_errors`` maps them to statuses.

* :class:`InvalidChange` - a value is out of range or the resulting config is inconsistent
  (INVALID_ARGUMENT, one :class:`FieldViolation` per bad field).
* :class:`TransitionError` - the verb is illegal in the current migration state
  (FAILED_PRECONDITION with the reason).
* :class:`VersionConflict` - compare-and-set failed (ABORTED; nothing changed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        detail = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid change: {detail}")


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


class StoreError(ControlError):
    """The store is unusable (corrupt, newer schema than this build knows, closed)."""
