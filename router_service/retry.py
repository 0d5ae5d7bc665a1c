"""Backoff between attempts: exponential with jitter, honouring an engine's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): "equal jitter", so the wait is
        never zero and retries from many routers spread out."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_delay_s)
        cap = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return cap / 2 + rng.uniform(0, cap / 2)
