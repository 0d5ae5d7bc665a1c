"""The request lifecycle shared by Generate and Embed: attempts, their outcomes, stream
timeouts and continuation. Plain modules: no grpc, no httpx (docs/failures.md)."""

from router_service.lifecycle.life import Attempt, OutcomeSink, RequestLife
from router_service.lifecycle.outcome import AttemptOutcome, Counting, Outcome, counting

__all__ = [
    "Attempt",
    "AttemptOutcome",
    "Counting",
    "Outcome",
    "OutcomeSink",
    "RequestLife",
    "counting",
]
