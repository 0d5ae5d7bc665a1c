"""Issue 21's size cases on the control service: a 5 MB Pause reason, 10 000 bad names in one
request. Each is INVALID_ARGUMENT with details far below the 16 kB trailer limit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import field_mask_pb2

from clients.gen.llmgateway.v1 import control_pb2
from control_service import convert
from control_service.state import Flags
from tests.control.conftest import Control, meta, violations

P = control_pb2
TRAILER_LIMIT = 16 * 1024


def trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    return sum(len(k) + len(v) for k, v in err.trailing_metadata() or ()) + len(err.details() or "")


async def test_a_5mb_pause_reason_is_refused(control: Control) -> None:
    """The audit's case: one 5 MB Pause reason made the snapshot larger than the routers'
    receive limit (config propagation stopped) and broke ``llmctl history`` for good."""
    await control.stub.Promote(P.PromoteRequest(meta=meta()))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.Pause(P.PauseRequest(meta=meta(reason="x" * 5_000_000)))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(exc.value) == ["meta.reason"]
    assert control.app.controller.current.version == 2  # nothing written
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.Pause(P.PauseRequest(meta=meta(actor="a" * 129)))
    assert violations(exc.value) == ["meta.actor"]
    ok = await control.stub.Pause(P.PauseRequest(meta=meta(reason="r" * 1024)))
    assert ok.snapshot.version == 3


async def test_10000_unknown_rule_names_give_capped_details(control: Control) -> None:
    """The audit's case: 10 000 unknown rule names gave RESOURCE_EXHAUSTED (trailers past
    16 kB) instead of INVALID_ARGUMENT."""
    flags = convert.flags_to_proto(Flags())
    flags.rollback.dry_run_rules.extend(f"no-such-rule-{i}" for i in range(10_000))
    request = P.UpdateFlagsRequest(
        meta=meta(),
        flags=flags,
        update_mask=field_mask_pb2.FieldMask(paths=["rollback.dry_run_rules"]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await control.stub.UpdateFlags(request)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    named = violations(exc.value)
    assert named[:2] == ["flags.rollback.dry_run_rules[0]", "flags.rollback.dry_run_rules[1]"]
    assert named[-1] == "(more)"
    assert len(named) == 11
    assert trailer_bytes(exc.value) < TRAILER_LIMIT


async def test_malformed_requests_are_invalid_argument_with_one_log_line(
    control: Control, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit's case: malformed protobuf gave UNKNOWN and a traceback per call; the session
    stream is guarded the same way."""
    raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = control.channel.unary_unary(
        "/llmgateway.v1.ControlService/Pause", request_serializer=None, response_deserializer=None
    )
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await raw(b"\x0a\x05\x0a\x03\xff\xfe\xfd")  # meta.actor: not UTF-8
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        session: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = control.channel.stream_stream(
            "/llmgateway.v1.ControlService/RouterSession",
            request_serializer=None,
            response_deserializer=None,
        )

        async def hello() -> AsyncIterator[bytes]:
            yield b"\xff\xff\xff"

        with pytest.raises(grpc.aio.AioRpcError) as exc:
            async for _ in session(hello()):
                pass
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info]
