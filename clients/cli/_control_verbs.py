"""``llmctl promote|set-weight|pause|resume|abort|retry|undo``: move the migration.

Each prints the resulting config (``-o json``: the snapshot's migration fields plus ``action``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from clients.cli._common import Subparsers
from clients.cli._control_common import add_parser, change_kwargs, run_control
from clients.cli._output import emit, format_pairs
from clients.cli._values import snapshot_dict, snapshot_rows
from clients.gen.llmgateway.v1 import control_pb2
from clients.llm import ControlClient

Call = Callable[[ControlClient, argparse.Namespace], Awaitable[control_pb2.ConfigSnapshot]]

PHASE_CHOICES = ("facade", "shadow", "split")


def register(subparsers: Subparsers) -> None:
    """Adds the migration verbs."""
    p = add_parser(
        subparsers,
        "promote",
        help="move the migration one step forward",
        description="FACADE -> SHADOW -> SPLIT (each split step, seed 10, 30, 70) -> PRIMARY. "
        "Refused while paused or aborted. The step into PRIMARY is refused (exit 3) unless the "
        "go/no-go gate says GO (llmctl gonogo), or --force is given with a --reason.",
        mutating=True,
    )
    p.add_argument("--full", action="store_true", help="go straight to PHASE_PRIMARY")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote into PRIMARY although the go/no-go gate is not GO (needs --reason; audited)",
    )
    _verb(p, "promote", lambda c, a: c.promote(full=a.full, force=a.force, **change_kwargs(a)))

    p = add_parser(
        subparsers,
        "set-weight",
        help="set vLLM's share of traffic in the SPLIT phase",
        description="Sets the SPLIT weight (1-99 percent to vLLM), entering SPLIT from SHADOW "
        "or PRIMARY. Use promote --full for 100 and undo for 0.",
        mutating=True,
    )
    p.add_argument("weight", type=int, metavar="N", help="vLLM share in percent, 1-99")
    _verb(p, "set_weight", lambda c, a: c.set_weight(a.weight, **change_kwargs(a)))

    p = add_parser(
        subparsers,
        "pause",
        help="freeze the migration where it is",
        description="Traffic keeps its placement; promote and set-weight are refused until "
        "resume. --reason is shown by status.",
        mutating=True,
    )
    _verb(p, "pause", lambda c, a: c.pause(**change_kwargs(a)))

    p = add_parser(
        subparsers,
        "resume",
        help="lift a pause",
        description="Lifts a pause.",
        mutating=True,
    )
    _verb(p, "resume", lambda c, a: c.resume(**change_kwargs(a)))

    p = add_parser(
        subparsers,
        "abort",
        help="send all traffic to Ollama until retry",
        description="Sends all traffic to Ollama and stays aborted until retry (which restores "
        "the aborted phase and weight) or undo.",
        mutating=True,
    )
    _verb(p, "abort", lambda c, a: c.abort(**change_kwargs(a)))

    p = add_parser(
        subparsers,
        "retry",
        help="leave ABORTED, back to the aborted phase and weight",
        description="Leaves ABORTED, returning to the phase and weight that were aborted.",
        mutating=True,
    )
    _verb(p, "retry", lambda c, a: c.retry(**change_kwargs(a)))

    p = add_parser(
        subparsers,
        "undo",
        help="go back one step, or to an earlier phase",
        description="Goes back one step (PRIMARY -> SPLIT 70 -> 30 -> 10 -> SHADOW -> FACADE), "
        "or to --to PHASE. Allowed while paused (the pause stays) and while aborted (which it "
        "leaves).",
        mutating=True,
    )
    p.add_argument(
        "--to",
        type=_phase,
        default=control_pb2.PHASE_UNSPECIFIED,
        metavar="PHASE",
        help=f"earlier phase to return to: {', '.join(PHASE_CHOICES)}",
    )
    _verb(p, "undo", lambda c, a: c.undo(to_phase=a.to, **change_kwargs(a)))


def _phase(text: str) -> control_pb2.Phase.ValueType:
    name = text.strip().lower().removeprefix("phase_")
    if name not in PHASE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"unknown phase {text!r} (expected one of: {', '.join(PHASE_CHOICES)})"
        )
    return control_pb2.Phase.Value(f"PHASE_{name.upper()}")


def _verb(parser: argparse.ArgumentParser, action: str, call: Call) -> None:
    def handler(args: argparse.Namespace) -> int:
        async def body(client: ControlClient) -> int:
            snap = await call(client, args)
            emit(
                args,
                {"action": action, **snapshot_dict(snap)},
                [
                    f"{action}: ok, config version {snap.version}",
                    *format_pairs(snapshot_rows(snap)),
                ],
            )
            return 0

        return run_control(args, body)

    parser.set_defaults(handler=handler)
