"""Deterministic traffic split: which routing keys belong to vLLM's share.

A salted 64-bit BLAKE2b of the routing key picks one of 10,000 buckets (0.01 % granularity, as
flagd's precision ADR argues for LLM traffic); keys in buckets below the share go to vLLM. The
same key always lands in the same bucket, on every router and across restarts (unlike Python's
``hash``), and raising the share only moves keys *to* vLLM: a ramp never flaps a query back.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000
_SALT = b"llmgateway.vllm_split.v1"


def bucket(routing_key: str) -> int:
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8, key=_SALT).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def in_share(routing_key: str, percent: float) -> bool:
    """True when ``routing_key`` falls in a ``percent`` (0-100) share."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return bucket(routing_key) < round(percent * BUCKETS / 100)
