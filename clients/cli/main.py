"""``llmctl`` entry point: global options, subcommand registry, error reporting.

Each subcommand lives in its own module with ``register(subparsers)``, which adds a parser and
sets ``handler`` (see :data:`clients.cli._common.Handler`); add new verbs to
:data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from clients.cli import (
    _control_flags,
    _control_state,
    _control_verbs,
    _embed,
    _engines,
    _generate,
    _gonogo,
    _gpu,
    _health,
    _parity,
    _shadow,
)
from clients.cli._common import Handler
from clients.cli._errors import EXIT_INTERRUPTED, describe, exit_status
from clients.llm import DEFAULT_TIMEOUT, RouterError

COMMAND_MODULES: tuple[ModuleType, ...] = (
    _generate,
    _embed,
    _control_state,
    _health,
    _control_verbs,
    _control_flags,
    _gonogo,
    _gpu,
    _engines,
    _shadow,
    _parity,
)
"""Modules whose ``register(subparsers)`` adds a subcommand, in help order."""

TARGET_ENV = "LLMCTL_TARGET"
DEFAULT_TARGET = "127.0.0.1:50051"


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The full parser; reads ``LLMCTL_TARGET`` for the default target."""
    parser = argparse.ArgumentParser(prog="llmctl", description="Operate the LLM gateway.")
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"router HOST:PORT (default ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        help=f"deadline of each call in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs llmctl; returns the exit status (:func:`clients.cli._errors.exit_status`)."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except RouterError as error:
        sys.stderr.write(describe(error) + "\n")
        return exit_status(error)
    except KeyboardInterrupt:
        sys.stderr.write("llmctl: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (llmctl ... | head): exit quietly; point stdout at devnull so the
        # interpreter's final flush does not raise again (Python docs, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
