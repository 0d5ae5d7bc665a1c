"""What the drill is pointed at and told, what it found, and the summary it prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clients.cli.api import format_table
from llmtools.drill._load import Call, engines, ttft_p95, vllm_share


@dataclass(frozen=True)
class DrillTargets:
    """Where the stack listens."""

    routers: Sequence[str]
    control: str
    ollama_url: str
    vllm_url: str


@dataclass(frozen=True)
class DrillConfig:
    concurrency: int = 8
    max_tokens: int = 12
    # Seconds of load measured in each step (FACADE and SHADOW get ``short_dwell_s``).
    dwell_s: float = 6.0
    short_dwell_s: float = 3.0
    # Stated expectation: an automatic rollback within this many seconds of a fault.
    rollback_within_s: float = 5.0
    # Allowed |vLLM share - weight|: this much plus three binomial standard deviations over the
    # step's queries (every call of a query shares its routing key, so queries are the samples).
    share_tolerance: float = 0.05
    outage_s: float = 4.0
    trace: bool = False
    # The meaning step (llmtools.drill._meaning): needs meaning-aware simulators.
    meaning: bool = True
    live: bool | None = None  # None: a live view when the output is a terminal


@dataclass
class StepResult:
    name: str
    expected_weight: float | None
    calls: list[Call]

    def row(self) -> list[str]:
        per = engines(self.calls)
        share, answered, _ = vllm_share(self.calls)
        expected = "-" if self.expected_weight is None else f"{self.expected_weight:.0f}%"
        return [
            self.name,
            str(len({c.query for c in self.calls})),
            str(per["ollama"]),
            str(per["vllm"]),
            str(sum(1 for c in self.calls if c.fallback)),
            str(per["error"]),
            f"{share * 100:.1f}%" if answered else "-",
            expected,
            _ms(ttft_p95(self.calls, "ollama")),
            _ms(ttft_p95(self.calls, "vllm")),
        ]


@dataclass
class Rollback:
    fault: str
    seconds: float | None
    rule: str = ""


@dataclass
class DrillResult:
    expectations: list[tuple[str, bool, str]] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    rollbacks: list[Rollback] = field(default_factory=list)
    user_visible_errors: int = 0
    calls: int = 0
    traced_request_id: str = ""

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.expectations)

    @property
    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.expectations if not ok]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def share_tolerance(weight: float, queries: int, base: float) -> float:
    w = weight / 100
    return base + 3 * math.sqrt(w * (1 - w) / max(queries, 1))


def number_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def summary_lines(result: DrillResult) -> list[str]:
    rows = [s.row() for s in result.steps]
    lines = [
        "",
        "=== drill summary ===",
        f"user-visible errors: {result.user_visible_errors} of {result.calls} calls",
    ]
    for rb in result.rollbacks:
        took = "none" if rb.seconds is None else f"{rb.seconds:.2f}s"
        rule = f" (rule: {rb.rule})" if rb.rule else ""
        lines.append(f"fault -> automatic rollback: {rb.fault}: {took}{rule}")
    if result.traced_request_id:
        lines.append(f"traced request id: {result.traced_request_id}")
    lines += [
        "",
        "calls per engine per step (generate and embed; share over generate calls):",
        *format_table(
            [
                "STEP",
                "QUERIES",
                "OLLAMA",
                "VLLM",
                "FALLBACK",
                "ERRORS",
                "VLLM SHARE",
                "WEIGHT",
                "TTFT p95 OLLAMA",
                "TTFT p95 VLLM",
            ],
            rows,
        ),
        "",
        "expectations:",
        *(f"  [{'ok' if ok else 'FAILED'}] {name}: {detail}" for name, ok, detail in
          result.expectations),
        "",
        f"drill {'PASSED' if result.ok else 'FAILED'}",
    ]  # fmt: skip
    return lines
