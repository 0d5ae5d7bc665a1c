"""Which requests are mirrored: a deterministic sample by request id.

The same construction as the traffic split (``router_service.split``): a keyed 64-bit BLAKE2b of
the request id picks one of 10,000 buckets (0.01 % granularity). The key (salt) is different, so
the mirrored sample is independent of the vLLM share: in SPLIT with ``shadow_during_split`` the
sample draws evenly from both sides. Every router makes the same decision for the same id.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000
_SALT = b"llmgateway.shadow_sample.v1"


def sample_bucket(request_id: str) -> int:
    digest = hashlib.blake2b(request_id.encode(), digest_size=8, key=_SALT).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def sampled(request_id: str, rate: float) -> bool:
    """True when ``request_id`` falls in a ``rate`` (0-1) sample."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return sample_bucket(request_id) < round(rate * BUCKETS)
