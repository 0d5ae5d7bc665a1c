"""Property tests over every RPC's request messages of both services (issue 21): valid and
hostile messages, and hostile bytes, against real servers. Whatever arrives, the outcome is OK
or a documented client error, never UNKNOWN / INTERNAL / DATA_LOSS, and the error's trailers
stay below grpc's 16 kB limit; server memory returns to its baseline after a hostile load."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from clients.gen.llmgateway.v1 import control_pb2, router_pb2
from tests.fuzz._strategies import hostile_bytes, messages
from tests.fuzz.conftest import Servers

ROUTER = router_pb2.DESCRIPTOR.services_by_name["RouterService"]
CONTROL = control_pb2.DESCRIPTOR.services_by_name["ControlService"]
METHODS: list[MethodDescriptor] = [*ROUTER.methods, *CONTROL.methods]
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
TRAILER_LIMIT = 16 * 1024


def _channel(servers: Servers, method: MethodDescriptor) -> grpc.Channel:
    return servers.router if method.containing_service is ROUTER else servers.control


def call(servers: Servers, method: MethodDescriptor, payload: bytes) -> grpc.RpcError | None:
    """One call with ``payload`` as the request bytes; the error, or None when it went well.
    Streams are read to the first response (a session or a watch runs for ever)."""
    channel = _channel(servers, method)
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            session: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
            stream = session(iter([payload]), timeout=3)
            try:
                next(stream, None)
            finally:
                stream.cancel()
        elif method.server_streaming:
            watch: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            responses = watch(payload, timeout=5)
            try:
                for _ in responses:
                    if method.name == "WatchGpuStatus":
                        break
            finally:
                responses.cancel()
        else:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            unary(payload, timeout=5)
    except grpc.RpcError as err:
        return err
    return None


def judge(err: grpc.RpcError | None) -> None:
    if err is None:
        return
    code = err.code()
    if code == grpc.StatusCode.CANCELLED:
        return  # our own cancel of a stream
    details = err.details() or ""
    assert code not in FORBIDDEN, f"{code.name}: {details[:300]}"
    trailers = err.trailing_metadata() or ()
    # Each (key, value) item printed: a little above its wire size, never below.
    size = sum(len(repr(item)) for item in trailers) + len(details)
    assert size < TRAILER_LIMIT, f"{code.name} with {size} bytes of trailers"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Only for a message past the receive limit or admission, never for trailers.
        assert "trailer" not in details.lower(), details
        assert "metadata" not in details.lower(), details


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
@given(data=st.data())
def test_valid_and_hostile_messages(servers: Servers, method: MethodDescriptor, data: Any) -> None:
    msg = data.draw(messages(method.input_type))
    judge(call(servers, method, msg.SerializeToString()))


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
@given(data=st.data())
def test_hostile_bytes(servers: Servers, method: MethodDescriptor, data: Any) -> None:
    err = call(servers, method, data.draw(hostile_bytes(method.input_type)))
    judge(err)


def test_memory_returns_to_its_baseline_after_a_hostile_load(servers: Servers) -> None:
    """Big requests refused (past the receive limit), many-field requests refused, malformed
    ones: what the servers allocated for them is freed once they are answered."""
    generate = next(m for m in ROUTER.methods if m.name == "Generate")
    pause = next(m for m in CONTROL.methods if m.name == "Pause")
    loads = [
        router_pb2.GenerateRequest(prompt="x" * 190_000).SerializeToString(),
        router_pb2.GenerateRequest(
            messages=[router_pb2.Message(content="")] * 1024
        ).SerializeToString(),
        router_pb2.GenerateRequest(prompt="y" * 3_000_000).SerializeToString(),
        b"\x0a\x03\xff\xfe\xfd",
    ]
    big_reason = control_pb2.PauseRequest(
        meta=control_pb2.ChangeMeta(reason="r" * 5_000_000)
    ).SerializeToString()

    def round_of_load() -> None:
        for payload in loads:
            judge(call(servers, generate, payload))
        judge(call(servers, pause, big_reason))

    round_of_load()  # warm-up: caches, pools, lazily built objects
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            round_of_load()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - baseline < 2 * 1024 * 1024, f"{(after - baseline) / 1e6:.1f} MB still held"
