"""How per-call options combine with the client's defaults."""

from __future__ import annotations

from clients.llm import DEFAULT_CHANNEL_OPTIONS, CallOptions
from clients.llm._channel import channel_options
from clients.llm._options import ClientDefaults


def test_call_options_override_defaults_one_by_one() -> None:
    defaults = ClientDefaults(timeout=30.0, metadata=[("x-team", "memos")], wait_for_ready=True)
    assert defaults.resolve(None, "r1").timeout == 30.0
    resolved = defaults.resolve(CallOptions(timeout=2.0, metadata=[("x-trace", "t")]), "r1")
    assert resolved.timeout == 2.0
    assert resolved.wait_for_ready is True
    assert resolved.metadata == (("x-team", "memos"), ("x-trace", "t"), ("x-request-id", "r1"))
    assert defaults.resolve(CallOptions(wait_for_ready=False), "r1").wait_for_ready is False


def test_request_id_metadata_is_always_the_calls_id() -> None:
    defaults = ClientDefaults(metadata=[("X-Request-Id", "stale")])
    resolved = defaults.resolve(CallOptions(metadata=[("x-request-id", "other")]), "r2")
    assert resolved.metadata == (("x-request-id", "r2"),)


def test_channel_options_override_defaults_by_name() -> None:
    (name, _), *_ = DEFAULT_CHANNEL_OPTIONS
    merged = dict(channel_options([(name, 1024), ("grpc.keepalive_time_ms", 30000)]))
    assert merged == {name: 1024, "grpc.keepalive_time_ms": 30000}
