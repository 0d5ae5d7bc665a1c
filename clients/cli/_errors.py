"""How llmctl reports a failed call: one line on stderr and an exit status, never a traceback.

One exit-status rule for every command (router and control verbs alike), documented in the
README: 0 ok; 2 invalid input (argparse, llmctl's own checks, INVALID_ARGUMENT); 3 illegal
transition (FAILED_PRECONDITION); 4 version conflict (ABORTED: compare-and-set lost); 5 not
authenticated or not allowed (UNAUTHENTICATED, PERMISSION_DENIED); 1 anything else (unreachable,
deadline, internal, ...); 130 interrupted.
"""

from __future__ import annotations

import grpc

from clients.llm import InvalidRequestError, RouterError

EXIT_OK = 0
EXIT_FAILURE = 1
"""The call failed."""
EXIT_USAGE = 2
"""The input was invalid (argparse, llmctl, or the service said so)."""
EXIT_INVALID = EXIT_USAGE
EXIT_ILLEGAL_TRANSITION = 3
EXIT_VERSION_CONFLICT = 4
EXIT_AUTH = 5
EXIT_INTERRUPTED = 130
"""Interrupted by Ctrl-C."""

_BY_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_ILLEGAL_TRANSITION,
    grpc.StatusCode.ABORTED: EXIT_VERSION_CONFLICT,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
}


def exit_status(error: RouterError) -> int:
    """The exit status for ``error`` (the module docstring gives the rule)."""
    if isinstance(error, InvalidRequestError):
        return EXIT_USAGE  # also when the router's ErrorInfo says so under another status
    return _BY_STATUS.get(error.status_code, EXIT_FAILURE)


def describe(error: RouterError) -> str:
    """One line naming the error code, memOS code, request id and any field violations."""
    return f"llmctl: error: {error}"
