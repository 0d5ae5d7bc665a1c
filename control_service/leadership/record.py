"""What the leadership key holds: which replica leads and where clients reach it. Plain data,
read by the store (to name the leader in a fenced write's error) and by the elector."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    replica_id: str
    # host:port of the leader's gRPC API, as clients should dial it.
    address: str

    def to_bytes(self) -> bytes:
        return json.dumps({"replica_id": self.replica_id, "address": self.address}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LeaderRecord:
        try:
            data = json.loads(raw)
            return cls(str(data["replica_id"]), str(data["address"]))
        except (ValueError, KeyError, TypeError):
            return cls("", "")
