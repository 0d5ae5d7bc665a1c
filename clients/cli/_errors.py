"""How llmctl reports a failed call: one line on stderr and an exit status, never a traceback."""

from __future__ import annotations

from clients.llm import InvalidRequestError, RouterError

EXIT_FAILURE = 1
"""The call failed."""
EXIT_INVALID = 2
"""The request was invalid (the router said so, or argparse did)."""
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C."""


def exit_status(error: RouterError) -> int:
    """The exit status for ``error``."""
    return EXIT_INVALID if isinstance(error, InvalidRequestError) else EXIT_FAILURE


def describe(error: RouterError) -> str:
    """One line naming the error code, memOS code, request id and any field violations."""
    return f"llmctl: error: {error}"
