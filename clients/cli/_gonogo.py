"""``llmctl gonogo``: the go/no-go gate for promotion to PHASE_PRIMARY (seed 7.3).

Prints each criterion (golden queries, p95 latency, shadow error rate, VRAM) with its verdict,
the value behind it and its threshold. The exit status is the verdict, so scripts can gate on
it: 0 GO, 3 NO-GO, 4 INCONCLUSIVE (not enough data: it holds promotion like NO-GO); a failed
call exits as the other control commands do (1 unreachable, 2 usage, 5 not allowed).
"""

from __future__ import annotations

import argparse
from typing import Any

from clients.cli._common import Subparsers
from clients.cli._control_common import add_parser, run_control
from clients.cli._output import emit, format_table
from clients.cli._values import enum_label
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient

EXIT_GO = 0
EXIT_NO_GO = 3
EXIT_INCONCLUSIVE = 4
# Running the golden queries takes as long as the slowest of them; a call that runs them gets
# this deadline unless --timeout says otherwise.
GOLDEN_TIMEOUT_S = 300.0

_EXIT_BY_VERDICT: dict[int, int] = {
    control_pb2.VERDICT_GO: EXIT_GO,
    control_pb2.VERDICT_NO_GO: EXIT_NO_GO,
    control_pb2.VERDICT_INCONCLUSIVE: EXIT_INCONCLUSIVE,
}
_TABLE_LABEL = {"go": "GO", "no_go": "NO-GO", "inconclusive": "INCONCLUSIVE"}


def register(subparsers: Subparsers) -> None:
    """Adds ``gonogo``."""
    p = add_parser(
        subparsers,
        "gonogo",
        help="evaluate the go/no-go gate for promotion to PRIMARY",
        description="Evaluates the seed's go/no-go criteria: all golden queries pass on vLLM, "
        "p95 latency under 5 s (NO-GO over 10 s), shadow-mode error rate under 1 % (NO-GO "
        "over 5 %), VRAM stable with no OOM. Promotion to PRIMARY is refused unless the gate "
        "says GO (or is forced with a reason).",
    )
    p.epilog = (
        f"exit status: {EXIT_GO} GO, {EXIT_NO_GO} NO-GO, {EXIT_INCONCLUSIVE} INCONCLUSIVE; "
        "1 call failed, 2 usage, 5 not authenticated or not allowed"
    )
    p.add_argument(
        "--run-golden",
        action="store_true",
        help="run the golden queries now (through the router pinned to vLLM) instead of "
        f"using the last run; waits up to {GOLDEN_TIMEOUT_S:g}s unless --timeout is given",
    )
    p.set_defaults(handler=run_gonogo)


def verdict_label(verdict: int) -> str:
    """``go``, ``no_go`` or ``inconclusive``."""
    return enum_label(control_pb2.Verdict.DESCRIPTOR, verdict)


def gate_document(response: control_pb2.EvaluateGoNoGoResponse) -> dict[str, Any]:
    return {
        "verdict": verdict_label(response.verdict),
        "criteria": [
            {
                "name": c.name,
                "verdict": verdict_label(c.verdict),
                "value": c.value,
                "threshold": c.threshold,
                "detail": c.detail,
            }
            for c in response.criteria
        ],
    }


def gate_lines(document: dict[str, Any]) -> list[str]:
    rows = [
        [
            c["name"],
            _TABLE_LABEL.get(c["verdict"], c["verdict"]),
            c["value"] or "-",
            c["threshold"] or "-",
            c["detail"] or "-",
        ]
        for c in document["criteria"]
    ]
    verdict = _TABLE_LABEL.get(document["verdict"], document["verdict"])
    return [
        f"go/no-go: {verdict}",
        "",
        *format_table(["CRITERION", "VERDICT", "VALUE", "THRESHOLD", "DETAIL"], rows),
    ]


def run_gonogo(args: argparse.Namespace) -> int:
    """Runs ``gonogo``."""
    if args.run_golden and args.timeout is None:
        args.timeout = GOLDEN_TIMEOUT_S

    async def body(client: ControlClient) -> int:
        response = await client.evaluate_go_no_go(run_golden=args.run_golden)
        document = gate_document(response)
        emit(args, document, gate_lines(document))
        return _EXIT_BY_VERDICT.get(response.verdict, EXIT_INCONCLUSIVE)

    return run_control(args, body)
