"""A real OTLP/gRPC trace receiver (the collector's TraceService) on a grpc.aio server on port 0,
in-process but on its own thread and event loop: the SDK's exporters block the thread that
exports (the test's loop for SimpleSpanProcessor and force_flush), so a receiver on that same
loop could never answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int  # 1 INTERNAL, 2 SERVER, 3 CLIENT
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str]]  # (trace_id, span_id)
    status_code: int


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._cond = threading.Condition()

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        got: list[ReceivedSpan] = []
        for rs in request.resource_spans:
            service = str(_attrs(rs.resource.attributes).get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        ReceivedSpan(
                            service,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            int(s.kind),
                            _attrs(s.attributes),
                            [(e.name, _attrs(e.attributes)) for e in s.events],
                            [(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links],
                            int(s.status.code),
                        )
                    )
        with self._cond:
            self.spans.extend(got)
            self._cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(predicate, within)

        assert await asyncio.to_thread(wait), "spans did not arrive"

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]


@dataclass
class RunningReceiver:
    receiver: Receiver
    endpoint: str
    _loop: asyncio.AbstractEventLoop
    _server: grpc.aio.Server
    _thread: threading.Thread

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def start_receiver() -> RunningReceiver:
    loop = asyncio.new_event_loop()
    receiver = Receiver()

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    thread = threading.Thread(target=loop.run_forever, name="otlp-receiver", daemon=True)
    thread.start()
    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    return RunningReceiver(receiver, f"http://127.0.0.1:{port}", loop, server, thread)
