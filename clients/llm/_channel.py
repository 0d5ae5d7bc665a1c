"""Channel options the clients use unless told otherwise."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

ChannelOption = tuple[str, str | int]

DEFAULT_CHANNEL_OPTIONS: tuple[ChannelOption, ...] = (
    # Large embedding batches exceed grpc's 4 MiB default (100 x 4096 float32 is ~1.6 MB).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def channel_options(overrides: Sequence[ChannelOption]) -> list[ChannelOption]:
    """The default options with ``overrides`` replacing same-named ones."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(overrides)
    return list(merged.items())


TRACING_ENV = "LLM_CLIENT_OTEL"


def tracing_interceptors(tracer_provider: Any | None) -> list[grpc.aio.ClientInterceptor]:
    """OpenTelemetry client interceptors (W3C ``traceparent`` and ``baggage`` in the metadata)
    when ``tracer_provider`` is given, or with the OTel global provider when ``LLM_CLIENT_OTEL``
    is true; none otherwise (no OTel import, no cost)."""
    if tracer_provider is None and os.environ.get(TRACING_ENV, "").lower() not in ("1", "true"):
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=tracer_provider))  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def request_id_baggage(enabled: bool, request_id: str) -> Iterator[None]:
    """``request_id`` as W3C baggage for a call started inside (only when tracing)."""
    if not enabled:
        yield
        return
    from opentelemetry import baggage, context

    token = context.attach(baggage.set_baggage("request_id", request_id))
    try:
        yield
    finally:
        context.detach(token)
