"""``llmctl shadow report``: how the shadow engine's answers compare with the primary's.

One row per task and model (pairs, dropped mirrors, success rates, TTFT and decode-rate deltas,
text similarity deciles, length ratio, semantic similarity p10/p50 and, for JSON answers, the
per-field agreement), then the worst pairs by similarity with their request ids, and with
``--by-episode`` one row per memOS query (routing key), worst first. Texts appear only when
routers captured them (``shadow_capture_content``).
"""

from __future__ import annotations

import argparse
from typing import Any

from clients.cli._common import Subparsers, non_negative_int
from clients.cli._control_common import add_parser, run_control
from clients.cli._output import emit, format_pairs, format_table
from clients.cli._values import enum_label, message_dict
from clients.gen.llmgateway.v1 import common_pb2, control_pb2
from clients.llm import ControlClient

DEFAULT_WORST = 10
# Longest text shown per field in the table (JSON has the whole captured text).
TEXT_PREVIEW = 80


def register(subparsers: Subparsers) -> None:
    """Adds ``shadow report``."""
    shadow = subparsers.add_parser(
        "shadow",
        help="shadow-mode comparisons (vLLM answers vs the primary's)",
        description="Shadow mode mirrors a sample of requests to the shadow engine and compares "
        "the answers; these commands read what the routers reported.",
    )
    verbs = shadow.add_subparsers(dest="shadow_command", metavar="VERB", required=True)
    p = add_parser(
        verbs,
        "report",
        help="per task and model figures and the worst pairs",
        description="Per task and model: pairs compared, mirrors dropped (shadow queue full), "
        "success rates of both sides, the median shadow-minus-primary TTFT and decode rate, text "
        "similarity p10/p50/p90 (token-multiset Jaccard, 0..1), the median length ratio "
        "(shadow/primary), the semantic similarity p10/p50 (cosine of the answers' embeddings, "
        "one model on one engine), the JSON per-field agreement and the LLM judge's wins/ties/"
        "losses for the shadow engine with its self-agreement on swapped order; then the "
        "lowest-similarity pairs. Texts only when routers captured them.",
    )
    p.add_argument(
        "--by-episode",
        action="store_true",
        help="also list each episode (memOS query, routing key), worst semantic score first",
    )
    p.add_argument(
        "--window",
        type=non_negative_int,
        default=0,
        metavar="S",
        help="only comparisons of the last S seconds (default 0: everything retained)",
    )
    p.add_argument(
        "--worst",
        type=non_negative_int,
        default=DEFAULT_WORST,
        metavar="N",
        help=f"how many lowest-similarity pairs to list (default {DEFAULT_WORST})",
    )
    p.set_defaults(handler=run_report)


def _task(value: int) -> str:
    return enum_label(common_pb2.Task.DESCRIPTOR, value)


def group_document(g: control_pb2.ShadowGroupReport) -> dict[str, Any]:
    return message_dict(g)


def pair_document(p: control_pb2.ShadowComparison) -> dict[str, Any]:
    doc = message_dict(p)
    del doc["dropped"]  # the report lists compared pairs only
    doc["embedding_cosine"] = p.embedding_cosine if p.HasField("embedding_cosine") else None
    doc["shadow_error_code"] = (
        enum_label(common_pb2.ErrorCode.DESCRIPTOR, p.shadow_error_code, zero="none")
        if p.shadow_error_code
        else None
    )
    return doc


def report_document(response: control_pb2.GetShadowReportResponse, window: int) -> dict[str, Any]:
    return {
        "window_seconds": window,
        "pairs": sum(g.pairs for g in response.groups),
        "dropped": sum(g.dropped for g in response.groups),
        "shadow_error_rate": response.shadow_error_rate,
        "groups": [group_document(g) for g in response.groups],
        "worst_pairs": [pair_document(p) for p in response.worst_pairs],
        "episodes": [message_dict(e) for e in response.episodes],
    }


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _signed(value: float, unit: str) -> str:
    return f"{value:+.1f}{unit}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_PREVIEW else flat[: TEXT_PREVIEW - 3] + "..."


def judge_text(g: control_pb2.ShadowGroupReport) -> str:
    """``3/5/1 (2 unjudged, self-agreement 80% of 5)`` from vLLM's side; ``-`` unjudged."""
    if not (g.judge_wins or g.judge_ties or g.judge_losses or g.judge_unjudged):
        return "-"
    text = f"{g.judge_wins}/{g.judge_ties}/{g.judge_losses}"
    notes = []
    if g.judge_unjudged:
        notes.append(f"{g.judge_unjudged} unjudged")
    if g.judge_swap_checks:
        notes.append(f"self-agreement {g.judge_swap_agreement:.0%} of {g.judge_swap_checks}")
    return f"{text} ({', '.join(notes)})" if notes else text


def report_lines(response: control_pb2.GetShadowReportResponse, window: int) -> list[str]:
    pairs = sum(g.pairs for g in response.groups)
    dropped = sum(g.dropped for g in response.groups)
    scope = f"last {window}s" if window else "everything retained"
    lines = format_pairs(
        [
            ("window", scope),
            ("pairs", f"{pairs} compared, {dropped} dropped (shadow queue full)"),
            ("shadow error rate", _pct(response.shadow_error_rate)),
        ]
    )
    if not response.groups:
        return [*lines, "", "no shadow comparisons reported"]
    rows = [
        [
            _task(g.task),
            g.model or "-",
            str(g.pairs),
            str(g.dropped),
            _pct(g.primary_success_rate),
            _pct(g.shadow_success_rate),
            _signed(g.ttft_delta_ms_p50, "ms"),
            _signed(g.tokens_per_second_delta_p50, ""),
            f"{g.similarity_p10:.2f}/{g.similarity_p50:.2f}/{g.similarity_p90:.2f}",
            f"{g.length_ratio_p50:.2f}",
            f"{g.embedding_cosine_p10:.2f}/{g.embedding_cosine_p50:.2f} ({g.semantic_pairs})"
            if g.semantic_pairs
            else "-",
            f"{g.json_field_agreement_mean:.0%} fields, {g.json_equal_rate:.0%} equal"
            if g.structured_pairs
            else "-",
            judge_text(g),
        ]
        for g in response.groups
    ]
    headers = [
        "TASK",
        "MODEL",
        "PAIRS",
        "DROPPED",
        "PRIMARY OK",
        "SHADOW OK",
        "TTFT DIFF p50",
        "TOK/S DIFF p50",
        "SIMILARITY p10/p50/p90",
        "LENGTH p50",
        "SEMANTIC p10/p50 (n)",
        "JSON",
        "JUDGE W/T/L",
    ]
    lines += ["", *format_table(headers, rows)]
    lines += _kind_lines(response)
    if response.worst_pairs:
        worst = [
            [
                p.request_id,
                _task(p.task),
                p.model,
                f"{p.text_similarity:.3f}",
                f"{p.length_ratio:.2f}",
                f"{p.embedding_cosine:.3f}" if p.HasField("embedding_cosine") else "-",
                f"{p.primary_ttft_ms:.0f}/{p.shadow_ttft_ms:.0f}ms",
            ]
            for p in response.worst_pairs
        ]
        lines += [
            "",
            f"worst {len(worst)} pair(s) by similarity:",
            *format_table(
                ["REQUEST ID", "TASK", "MODEL", "SIMILARITY", "LENGTH", "COSINE", "TTFT P/S"],
                worst,
            ),
        ]
        for p in response.worst_pairs:
            if p.prompt or p.primary_text or p.shadow_text:
                lines += [
                    "",
                    f"{p.request_id}:",
                    f"  prompt:  {_preview(p.prompt)}",
                    f"  primary: {_preview(p.primary_text)}",
                    f"  shadow:  {_preview(p.shadow_text)}",
                ]
    if response.episodes:
        episodes = [
            [
                e.routing_key,
                str(e.pairs),
                str(e.shadow_failures),
                f"{e.similarity_min:.2f}",
                f"{e.semantic_min:.2f}" if e.HasField("semantic_min") else "-",
                ", ".join(_task(t) for t in e.tasks),
            ]
            for e in response.episodes
        ]
        lines += [
            "",
            f"{len(episodes)} episode(s), worst first:",
            *format_table(
                ["EPISODE", "PAIRS", "SHADOW FAILED", "SIMILARITY MIN", "SEMANTIC MIN", "TASKS"],
                episodes,
            ),
        ]
    return lines


def run_report(args: argparse.Namespace) -> int:
    """Runs ``shadow report``."""
    window: int = args.window

    async def body(client: ControlClient) -> int:
        worst: int = args.worst
        # The service reads 0 as "its default"; here 0 means none.
        response = await client.get_shadow_report(
            window_seconds=window, worst=max(worst, 1), by_episode=args.by_episode
        )
        del response.worst_pairs[worst:]
        emit(args, report_document(response, window), report_lines(response, window))
        return 0

    return run_control(args, body)


def _kind_lines(response: control_pb2.GetShadowReportResponse) -> list[str]:
    """Parity by output kind: answers compared without reasoning, JSON validity per engine,
    tool-call agreement, reasoning length, LENGTH finishes."""
    groups = [
        g for g in response.groups if g.structured_pairs or g.tool_call_pairs or g.reasoning_pairs
    ]
    if not groups:
        return []
    rows = [
        [
            _task(g.task),
            g.model or "-",
            str(g.structured_pairs),
            f"{_pct(g.primary_json_valid_rate)}/{_pct(g.shadow_json_valid_rate)}"
            if g.structured_pairs
            else "-",
            f"{_pct(g.primary_schema_valid_rate)}/{_pct(g.shadow_schema_valid_rate)}"
            if g.structured_pairs
            else "-",
            str(g.tool_call_pairs),
            _pct(g.tool_call_agreement_rate) if g.tool_call_pairs else "-",
            f"{g.reasoning_length_ratio_p50:.2f}" if g.reasoning_pairs else "-",
            f"{_pct(g.primary_length_finish_rate)}/{_pct(g.shadow_length_finish_rate)}",
        ]
        for g in groups
    ]
    headers = [
        "TASK",
        "MODEL",
        "JSON PAIRS",
        "JSON VALID P/S",
        "SCHEMA VALID P/S",
        "TOOL PAIRS",
        "TOOLS AGREE",
        "REASONING p50",
        "LENGTH FINISH P/S",
    ]
    return ["", "parity by output kind (primary/shadow):", *format_table(headers, rows)]
