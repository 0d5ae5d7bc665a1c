"""What a router's stats report may say before it reaches the rollback rules.

The rules add up counts from every router, so one report with ``requests=1e15`` or
``errors=-1e9`` hides (or invents) a fleet's worth of errors. A report is refused as a whole
(and with it the session, see ``control_service.session``) when any count is negative or above
``max_count``, a part exceeds its whole (errors > requests, timeouts > errors, the per-code
errors > errors, a histogram holding more observations than requests), a histogram is
malformed, it names an unknown provider or task, or its ``config_version`` is from the future
(above the current version). The report carries no router id: it is the session's, whose id
the credential bound at the hello, so a router can only ever report for itself.

These ceilings bound what one router can do; ``control_service.rollback.agreement`` makes sure
no single router's reports alone trigger a rollback.

Plain Python over the generated messages; no grpc.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from clients.gen.llmgateway.v1 import control_pb2
from control_service.errors import FieldViolation
from llmcore.vocabulary import PROVIDER_FROM_PROTO, TASK_FROM_PROTO

MAX_ENTRIES = 64  # providers x tasks x (answered, shadow) is 20 today
MAX_BUCKETS = 64
MAX_ERROR_CODES = 64
MAX_COMPARISONS = 2000
# A comparison's captured texts (shadow_capture_content): the prompt limit, in characters.
MAX_TEXT_CHARS = 200_000
# Tokens per request at most (prompt or completion): far above any model's context.
MAX_TOKENS_PER_REQUEST = 1_000_000
# The first violations are named, the rest counted (error details stay far below 16 kB).
MAX_NAMED = 10


def check_report(
    msg: control_pb2.StatsReport, *, current_version: int, max_count: int
) -> list[FieldViolation]:
    """Every reason ``msg`` cannot be trusted (empty: it can)."""
    bad: list[FieldViolation] = []
    if not 0 <= msg.config_version <= current_version:
        bad.append(
            FieldViolation(
                "stats.config_version", f"must be in [0, {current_version}] (the current version)"
            )
        )
    if len(msg.stats) > MAX_ENTRIES:
        bad.append(FieldViolation("stats.stats", f"at most {MAX_ENTRIES} entries"))
    for i, s in enumerate(msg.stats[:MAX_ENTRIES]):
        _entry(bad, f"stats.stats[{i}]", s, max_count)
    if len(msg.shadow_comparisons) > MAX_COMPARISONS:
        bad.append(FieldViolation("stats.shadow_comparisons", f"at most {MAX_COMPARISONS}"))
    for i, c in enumerate(msg.shadow_comparisons[:MAX_COMPARISONS]):
        _comparison(bad, f"stats.shadow_comparisons[{i}]", c)
    if not 0 <= msg.shadow_dropped <= max_count:
        bad.append(FieldViolation("stats.shadow_dropped", f"must be in [0, {max_count}]"))
    return bad


def _count(bad: list[FieldViolation], name: str, value: int, ceiling: int) -> None:
    if not 0 <= value <= ceiling:
        bad.append(FieldViolation(name, f"must be in [0, {ceiling}], got {value}"))


def _entry(
    bad: list[FieldViolation], at: str, s: control_pb2.ProviderTaskStats, max_count: int
) -> None:
    if s.provider not in PROVIDER_FROM_PROTO:
        bad.append(FieldViolation(f"{at}.provider", f"unknown provider value {s.provider}"))
    if s.task not in TASK_FROM_PROTO:
        bad.append(FieldViolation(f"{at}.task", f"unknown task value {s.task}"))
    _count(bad, f"{at}.requests", s.requests, max_count)
    _count(bad, f"{at}.errors", s.errors, max(0, min(s.requests, max_count)))
    _count(bad, f"{at}.timeouts", s.timeouts, max(0, min(s.errors, max_count)))
    _count(bad, f"{at}.consecutive_timeouts", s.consecutive_timeouts, max_count)
    tokens = max(0, min(s.requests, max_count)) * MAX_TOKENS_PER_REQUEST
    _count(bad, f"{at}.prompt_tokens", s.prompt_tokens, tokens)
    _count(bad, f"{at}.completion_tokens", s.completion_tokens, tokens)
    if len(s.errors_by_code) > MAX_ERROR_CODES:
        bad.append(FieldViolation(f"{at}.errors_by_code", f"at most {MAX_ERROR_CODES} entries"))
    by_code = 0
    for j, e in enumerate(s.errors_by_code[:MAX_ERROR_CODES]):
        _count(bad, f"{at}.errors_by_code[{j}].count", e.count, max_count)
        by_code += max(0, e.count)
    if by_code > max(0, s.errors):
        bad.append(FieldViolation(f"{at}.errors_by_code", "counts add up to more than errors"))
    for name in ("ttft_ms", "total_ms"):
        if s.HasField(name):
            _histogram(bad, f"{at}.{name}", getattr(s, name), s.requests, max_count)
    if s.router_id:
        bad.append(FieldViolation(f"{at}.router_id", "is set by the control service, not sent"))


def _histogram(
    bad: list[FieldViolation], at: str, h: control_pb2.Histogram, requests: int, max_count: int
) -> None:
    bounds: Sequence[float] = h.upper_bounds
    if not h.counts and not bounds:
        return
    if len(bounds) > MAX_BUCKETS:
        bad.append(FieldViolation(f"{at}.upper_bounds", f"at most {MAX_BUCKETS} buckets"))
        return
    if any(not math.isfinite(b) or b < 0 for b in bounds) or any(
        a >= b for a, b in itertools.pairwise(bounds)
    ):
        bad.append(
            FieldViolation(f"{at}.upper_bounds", "must be finite, >= 0, strictly increasing")
        )
    if len(h.counts) != len(bounds) + 1:
        bad.append(FieldViolation(f"{at}.counts", "needs len(upper_bounds) + 1 entries"))
    if any(not 0 <= c <= max_count for c in h.counts):
        bad.append(FieldViolation(f"{at}.counts", f"each must be in [0, {max_count}]"))
    elif sum(h.counts) > max(0, requests):
        bad.append(FieldViolation(f"{at}.counts", "hold more observations than requests"))
    if not math.isfinite(h.sum) or h.sum < 0:
        bad.append(FieldViolation(f"{at}.sum", "must be finite and >= 0"))


def _comparison(bad: list[FieldViolation], at: str, c: control_pb2.ShadowComparison) -> None:
    for name in ("primary_text", "shadow_text", "prompt"):
        if len(getattr(c, name)) > MAX_TEXT_CHARS:
            bad.append(FieldViolation(f"{at}.{name}", f"at most {MAX_TEXT_CHARS} characters"))
    for name in ("request_id", "model"):
        if len(getattr(c, name)) > 256:
            bad.append(FieldViolation(f"{at}.{name}", "at most 256 characters"))
    numbers = (
        "primary_ttft_ms",
        "shadow_ttft_ms",
        "primary_tokens_per_second",
        "shadow_tokens_per_second",
        "length_ratio",
        "text_similarity",
    )
    if any(not math.isfinite(getattr(c, n)) for n in numbers):
        bad.append(FieldViolation(at, "timings and scores must be finite"))


def summary(bad: Sequence[FieldViolation]) -> str:
    """The first violations, then how many more: for the audit reason and the log line."""
    named = "; ".join(f"{v.field}: {v.description}" for v in bad[:MAX_NAMED])
    more = len(bad) - MAX_NAMED
    return named + (f"; and {more} more" if more > 0 else "")
