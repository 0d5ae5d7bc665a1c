"""Per-call options and how they combine with the client's defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REQUEST_ID_METADATA_KEY = "x-request-id"
"""The metadata key the request id travels in, besides the request's own field."""

DEFAULT_TIMEOUT = 120.0
"""Seconds a call may take unless the client or the call says otherwise."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Options every RPC wrapper takes (the same for every call, as in temporalio's client).

    ``None`` means "use the client's default", so a call can override one option only.
    ``metadata`` is added to the client's default metadata.
    """

    timeout: float | None = None
    """Deadline in seconds from the start of the call."""
    metadata: Sequence[tuple[str, str]] = ()
    """Extra request metadata (lowercase keys)."""
    wait_for_ready: bool | None = None
    """Queue the call until the channel is ready instead of failing fast when it is not."""


@dataclass(frozen=True, slots=True)
class ResolvedCallOptions:
    """Options after merging a call's with the client's defaults: what grpc is given."""

    timeout: float | None
    metadata: tuple[tuple[str, str], ...]
    wait_for_ready: bool


@dataclass(frozen=True, slots=True)
class ClientDefaults:
    """A client's defaults for :class:`CallOptions`."""

    timeout: float | None = DEFAULT_TIMEOUT
    metadata: Sequence[tuple[str, str]] = ()
    wait_for_ready: bool = False

    def resolve(self, options: CallOptions | None, request_id: str) -> ResolvedCallOptions:
        """Merges ``options`` over these defaults and adds the ``x-request-id`` metadata."""
        options = options or CallOptions()
        metadata = [
            (key, value)
            for key, value in (*self.metadata, *options.metadata)
            if key.lower() != REQUEST_ID_METADATA_KEY
        ]
        metadata.append((REQUEST_ID_METADATA_KEY, request_id))
        return ResolvedCallOptions(
            timeout=self.timeout if options.timeout is None else options.timeout,
            metadata=tuple(metadata),
            wait_for_ready=(
                self.wait_for_ready if options.wait_for_ready is None else options.wait_for_ready
            ),
        )
