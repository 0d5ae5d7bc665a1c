"""Injectable faults: the live ``Faults`` object, the ``X-Sim-Fault`` header and per-request plans.

A request takes a snapshot of the live faults when it arrives (``plan_for``); a header on that
request overrides individual fields for that request only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = ["FaultHeaderError", "FaultPlan", "Faults", "parse_fault_header", "plan_for"]


class Faults(BaseModel):
    """Faults that apply to every inference request until cleared.

    Assigning a field validates it and takes effect at once (listeners are notified, which is how
    ``refuse_connections`` closes and reopens the listening socket).
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int = Field(default=500, ge=400, le=599)
    added_latency_ms: float = Field(default=0.0, ge=0.0)
    slow_first_token_ms: float = Field(default=0.0, ge=0.0)
    stall_after_tokens: int | None = Field(default=None, ge=0)
    disconnect_after_tokens: int | None = Field(default=None, ge=0)
    malformed_after_tokens: int | None = Field(default=None, ge=0)
    midstream_error_after_tokens: int | None = Field(default=None, ge=0)
    health_failing: bool = False
    refuse_connections: bool = False
    # When > 0, ``refuse_connections`` clears itself after this long (the admin endpoint shares
    # the refused port, so this is the only way to undo it over HTTP).
    refuse_connections_ms: float = Field(default=0.0, ge=0.0)
    # With answer_mode "concepts": answers mean something other than what the prompt asks,
    # in the same fluent form (a "wrong but plausible" engine, llmsim._meaning).
    unrelated_answers: bool = False

    _listeners: list[Callable[[str], None]] = PrivateAttr(default_factory=list)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            for listener in list(self._listeners):
                listener(name)

    def add_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def update(self, changes: dict[str, Any]) -> None:
        """Validate ``changes`` as a whole (unknown keys rejected), then apply them in place."""
        merged = type(self).model_validate({**self.model_dump(), **changes})
        for name in changes:
            new = getattr(merged, name)
            if getattr(self, name) != new:
                setattr(self, name, new)

    def clear(self) -> None:
        self.update(Faults().model_dump())


class FaultHeaderError(ValueError):
    """The ``X-Sim-Fault`` header could not be parsed."""


# header key -> FaultPlan attribute
_HEADER_KEYS = {
    "error": "error_status",
    "latency_ms": "latency_ms",
    "added_latency_ms": "latency_ms",
    "slow_first_token_ms": "slow_first_token_ms",
    "stall_after": "stall_after",
    "stall_after_tokens": "stall_after",
    "disconnect_after": "disconnect_after",
    "disconnect_after_tokens": "disconnect_after",
    "malformed_after": "malformed_after",
    "malformed_after_tokens": "malformed_after",
    "midstream_error_after": "midstream_error_after",
    "midstream_error_after_tokens": "midstream_error_after",
}
_FLOAT_FIELDS = {"latency_ms", "slow_first_token_ms"}


def parse_fault_header(value: str, default_status: int) -> dict[str, float | int]:
    """Parse ``error=503, disconnect_after=3`` into FaultPlan overrides."""
    out: dict[str, float | int] = {}
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        key, val = key.strip().lower(), val.strip()
        field = _HEADER_KEYS.get(key)
        if field is None:
            raise FaultHeaderError(f"unknown X-Sim-Fault key {key!r}")
        if field == "error_status" and not sep:
            out[field] = default_status
            continue
        try:
            num: float | int = float(val) if field in _FLOAT_FIELDS else int(val)
        except ValueError:
            raise FaultHeaderError(f"bad X-Sim-Fault value for {key!r}: {val!r}") from None
        if num < 0 or (field == "error_status" and not 400 <= num <= 599):
            raise FaultHeaderError(f"out-of-range X-Sim-Fault value for {key!r}: {val!r}")
        out[field] = num
    return out


@dataclass(slots=True)
class FaultPlan:
    """The faults one request will suffer, fixed when it arrives."""

    error_status: int | None = None
    latency_ms: float = 0.0
    slow_first_token_ms: float = 0.0
    stall_after: int | None = None
    disconnect_after: int | None = None
    malformed_after: int | None = None
    midstream_error_after: int | None = None

    def events(self, n_tokens: int) -> list[tuple[int, str]]:
        """(position, kind) pairs sorted by position; a position past the end fires at the end."""
        out: list[tuple[int, str]] = []
        for kind, pos in (
            ("malformed", self.malformed_after),
            ("midstream_error", self.midstream_error_after),
            ("disconnect", self.disconnect_after),
            ("stall", self.stall_after),
        ):
            if pos is not None:
                out.append((min(pos, n_tokens), kind))
        out.sort(key=lambda e: e[0])
        return out


def plan_for(faults: Faults, header: str | None, rng: random.Random) -> FaultPlan:
    """Snapshot the live faults for one request, then apply the header's overrides."""
    plan = FaultPlan(
        error_status=(
            faults.error_status
            if faults.error_rate > 0 and rng.random() < faults.error_rate
            else None
        ),
        latency_ms=faults.added_latency_ms,
        slow_first_token_ms=faults.slow_first_token_ms,
        stall_after=faults.stall_after_tokens,
        disconnect_after=faults.disconnect_after_tokens,
        malformed_after=faults.malformed_after_tokens,
        midstream_error_after=faults.midstream_error_after_tokens,
    )
    if header:
        for field, value in parse_fault_header(header, faults.error_status).items():
            setattr(plan, field, value)
    return plan
