"""The drill's checks of the shadow report: pairs were compared, with parity figures for every
output kind of the memOS-like load."""

from __future__ import annotations

from clients.gen.llmgateway.v1 import control_pb2


def parity(report: control_pb2.GetShadowReportResponse) -> tuple[bool, str]:
    """Whether JSON, tool-call and reasoning pairs were compared, and the counts."""
    json_pairs = sum(g.structured_pairs for g in report.groups)
    tool_pairs = sum(g.tool_call_pairs for g in report.groups)
    reasoned = sum(g.reasoning_pairs for g in report.groups)
    detail = f"{json_pairs} JSON, {tool_pairs} tool-call, {reasoned} reasoning pairs"
    return json_pairs > 0 and tool_pairs > 0 and reasoned > 0, detail


def shadow_checks(report: control_pb2.GetShadowReportResponse) -> list[tuple[str, bool, str]]:
    """(expectation, held, detail) for the drill's summary."""
    pairs = sum(g.pairs for g in report.groups)
    return [
        ("shadow comparisons reported", pairs > 0, f"{pairs} pairs"),
        ("parity by output kind (JSON, tool calls, reasoning)", *parity(report)),
    ]
