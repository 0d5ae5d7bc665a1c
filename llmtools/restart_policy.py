"""When to restart a child of ``make run`` that exited: exponential backoff, reset once it ran.

Plain data in, a delay out, so the policy is tested without processes. The shape follows the
process supervisors operators already know (systemd's ``RestartSec`` growing with
``RestartSteps``, Docker's ``unless-stopped`` doubling from 100 ms): a child that crashes at once
is retried less and less often, one that ran for a while is restarted at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    # A child that stayed up this long before exiting counts as healthy: its next restart waits
    # only ``initial_s`` again.
    stable_s: float = 30.0

    def delay(self, quick_failures: int) -> float:
        """The wait before restart number ``quick_failures`` (1-based) of a crash loop."""
        return min(self.max_s, self.initial_s * self.factor ** max(0, quick_failures - 1))


@dataclass(slots=True)
class RestartState:
    """One child's crash-loop counter."""

    quick_failures: int = 0
    restarts: int = 0

    def exited(self, policy: RestartPolicy, ran_for_s: float) -> float:
        """Record an exit after ``ran_for_s`` seconds up; returns the delay before restarting."""
        self.quick_failures = 1 if ran_for_s >= policy.stable_s else self.quick_failures + 1
        self.restarts += 1
        return policy.delay(self.quick_failures)
