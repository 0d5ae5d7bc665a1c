"""Tracing setup shared by the router and the control service.

Each service builds its own ``TracerProvider`` in its start function (from its settings and the
standard ``OTEL_*`` variables) and passes it, or a ``Tracer`` from it, down. Nothing here sets
the OTel API's global provider; the propagator is the API's default (W3C tracecontext + baggage,
``OTEL_PROPAGATORS``), which the grpc and httpx instrumentations use to inject and extract.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

REQUEST_ID_KEY = "request_id"
INSTRUMENTATION_NAME = "llmgateway"

# Streaming handlers written with ``context.write`` break under the aio server interceptor
# (opentelemetry-python-contrib#3066: it does ``async for`` over the handler). The health
# service's Watch is such a handler; reflection and the control's RouterSession (pre-serialized
# bytes written with context.write) are long-lived streams with nothing to trace.
EXCLUDED_SERVICES: tuple[str, ...] = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
)
EXCLUDED_METHODS: tuple[str, ...] = ("RouterSession",)


def tracing_endpoint(configured: str) -> str:
    """The OTLP gRPC endpoint to export to, or "" (tracing off).

    Off when ``OTEL_SDK_DISABLED`` is true; otherwise the setting, else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    return (
        configured
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    )


class RequestIdSpanProcessor(SpanProcessor):
    """Copies the ``request_id`` baggage entry onto every span started under it (the grpc and
    httpx instrumentations' spans included), so Jaeger finds a request's spans by tag."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        rid = baggage.get_baggage(REQUEST_ID_KEY, parent_context)
        if rid:
            span.set_attribute(REQUEST_ID_KEY, str(rid))

    def on_end(self, span: ReadableSpan) -> None:
        return None


def build_tracer_provider(
    service_name: str, endpoint: str, *, insecure: bool | None = None
) -> TracerProvider | None:
    """A provider exporting over OTLP gRPC to ``endpoint`` in batches, or None when ``endpoint``
    is empty. ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override/extend the
    resource; the sampler comes from ``OTEL_TRACES_SAMPLER`` (default parentbased_always_on)."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = new_tracer_provider(service_name)
    if insecure is None:
        insecure = endpoint.startswith("http://")
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure))
    )
    return provider


def new_tracer_provider(service_name: str) -> TracerProvider:
    """A provider with the service's resource and the request-id processor, no exporter yet."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(RequestIdSpanProcessor())
    return provider


def get_tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    """A tracer from ``provider``; a no-op tracer when tracing is off."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(INSTRUMENTATION_NAME)


def _filter() -> Callable[[Any], bool]:
    from opentelemetry.instrumentation.grpc import filters

    excluded = [filters.service_name(s) for s in EXCLUDED_SERVICES]
    excluded += [filters.method_name(m) for m in EXCLUDED_METHODS]
    return filters.negate(filters.any_of(*excluded))  # type: ignore[no-any-return,unused-ignore]


def server_interceptors(provider: trace.TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """The OTel aio server interceptor (none when tracing is off)."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=provider, filter_=_filter())]  # type: ignore[no-untyped-call]


def client_interceptors(
    provider: trace.TracerProvider | None,
) -> Sequence[grpc.aio.ClientInterceptor]:
    """The OTel aio client interceptors (none when tracing is off)."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=provider, filter_=_filter()))  # type: ignore[no-untyped-call]


@contextmanager
def request_baggage(request_id: str) -> Iterator[None]:
    """``request_id`` as baggage for what runs inside (it goes out in traceparent's company)."""
    token = context.attach(baggage.set_baggage(REQUEST_ID_KEY, request_id))
    try:
        yield
    finally:
        context.detach(token)


def instrument_http_client(client: Any, provider: trace.TracerProvider | None) -> None:
    """Client spans and ``traceparent``/``baggage`` headers on one httpx client's requests
    (its transport; the span ends at the response headers, protocols.md 3.3)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=provider, meter_provider=NoOpMeterProvider()
    )
