"""Small helpers shared by the router tests: collecting streams and decoding error details."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.gen.llmgateway.v1 import router_pb2


@dataclass
class Collected:
    messages: list[router_pb2.GenerateResponse] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("event")) for m in self.messages]

    @property
    def text(self) -> str:
        return "".join(m.delta.text for m in self.messages if m.HasField("delta"))

    @property
    def start(self) -> router_pb2.GenerateStart:
        return self.messages[0].start

    @property
    def end(self) -> router_pb2.GenerateEnd:
        return self.messages[-1].end


async def collect(
    call: grpc.aio.UnaryStreamCall[router_pb2.GenerateRequest, router_pb2.GenerateResponse],
    into: Collected | None = None,
) -> Collected:
    out = into if into is not None else Collected()
    async for msg in call:
        out.messages.append(msg)
    return out


@dataclass
class Decoded:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    fields: list[str]


def decode(err: grpc.aio.AioRpcError) -> Decoded:
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    reason, metadata, fields = "", {}, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
            assert info.domain == "llmgateway"
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return Decoded(err.code(), err.details() or "", reason, metadata, fields)
