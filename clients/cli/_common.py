"""What the subcommands share: the router connection, output options and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from clients.llm import DEFAULT_TIMEOUT, Provider, SyncRouterClient

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``register(subparsers)`` receives from :func:`clients.cli.main.build_parser`."""

Handler: TypeAlias = Callable[[argparse.Namespace], int]
"""A subcommand's body: parsed arguments in, exit status out; errors propagate as exceptions."""

PROVIDER_CHOICES = [p.value for p in Provider if p is not Provider.UNSPECIFIED]


def connect_router(args: argparse.Namespace) -> SyncRouterClient:
    """A client of the router named by the global ``--target``/``--timeout`` options."""
    timeout: float | None = args.timeout
    return SyncRouterClient(args.target, timeout=DEFAULT_TIMEOUT if timeout is None else timeout)


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``-o/--output text|json``."""
    parser.add_argument(
        "-o",
        "--output",
        choices=["text", "json"],
        default="text",
        help="text (default) or one JSON object on stdout",
    )


def print_json(value: dict[str, Any]) -> None:
    """Writes ``value`` as one JSON line on stdout."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: an integer > 0."""
    value = _int_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = _int_arg(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0 (not NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def print_note(line: str) -> None:
    """Writes a line for the operator on stderr (summaries, not data)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
