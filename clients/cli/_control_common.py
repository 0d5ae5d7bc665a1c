"""What the control-service verbs share: options, running a verb on a client, the error report.

Exit codes: :func:`clients.cli._errors.exit_status` (one rule for every llmctl command).
Formatting lives in ``_values`` (what values read as) and ``_output`` (how they are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from clients.cli._common import non_negative_int
from clients.cli._errors import EXIT_OK, EXIT_USAGE, exit_status
from clients.cli._token import DEFAULT_TOKEN_FILE, TOKEN_ENV, TOKEN_FILE_ENV, default_token
from clients.llm import DEFAULT_CONTROL_TIMEOUT, ControlClient, RouterError

CONTROL_ENV = "LLMCTL_CONTROL"
DEFAULT_CONTROL = "127.0.0.1:50061"

EXIT_CODES_HELP = (
    "exit status: 0 ok, 2 usage or invalid argument, 3 illegal transition, "
    "4 version conflict (--expected-version), 5 not authenticated or not allowed, 1 other"
)

Body = Callable[[ControlClient], Awaitable[int]]


class UsageError(Exception):
    """A command-line value llmctl itself refuses (exit 2); the message names the argument."""


# --- options --------------------------------------------------------------------------------


def default_actor() -> str:
    """``$USER@hostname`` (what the audit log records when ``--actor`` is not given)."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    mutating: bool = False,
) -> argparse.ArgumentParser:
    """A control-verb subparser with ``--control``, ``--token`` and ``-o table|json`` (and, for
    ``mutating``, ``--reason``, ``--actor``, ``--expected-version``)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXIT_CODES_HELP,
    )
    add_connection_options(parser)
    if mutating:
        add_change_options(parser)
    return parser


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        default=os.environ.get(CONTROL_ENV) or DEFAULT_CONTROL,
        metavar="HOST:PORT[,HOST:PORT...]",
        help=(
            f"control service replicas, comma-separated: mutations follow the leader, an "
            f"unreachable replica is skipped (default ${CONTROL_ENV} or {DEFAULT_CONTROL})"
        ),
    )
    parser.add_argument(
        "--token",
        default=default_token(),
        help=f"bearer token (default ${TOKEN_ENV}, ${TOKEN_FILE_ENV} or {DEFAULT_TOKEN_FILE})",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="table (default, aligned columns) or one JSON document on stdout",
    )


def add_change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why (recorded in the audit log)")
    parser.add_argument(
        "--actor", default=None, help="who (recorded in the audit log; default $USER@hostname)"
    )
    parser.add_argument(
        "--expected-version",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="compare-and-set: fail (exit 4) unless the config is still at version N",
    )


def change_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ChangeMeta`` keyword arguments of a mutating call."""
    actor: str | None = args.actor
    return {
        "actor": actor if actor else default_actor(),
        "reason": args.reason,
        "expected_version": args.expected_version,
    }


# --- running a verb -------------------------------------------------------------------------


def run_control(args: argparse.Namespace, body: Body, *, interrupt_ok: bool = False) -> int:
    """Runs ``body`` with a client of ``--control``; maps failures to one clear stderr report
    and the exit status. ``interrupt_ok``: Ctrl-C ends the command normally (exit 0)."""
    timeout: float | None = args.timeout

    async def go() -> int:
        async with ControlClient(
            args.control,
            token=args.token or None,
            timeout=DEFAULT_CONTROL_TIMEOUT if timeout is None else timeout,
        ) as client:
            return await body(client)

    try:
        return asyncio.run(go())
    except UsageError as error:
        error_line(str(error))
        return EXIT_USAGE
    except RouterError as error:
        report(error, args.control)
        return exit_status(error)
    except KeyboardInterrupt:
        if interrupt_ok:
            return EXIT_OK
        raise


def error_line(text: str) -> None:
    sys.stderr.write(f"llmctl: error: {text}\n")
    sys.stderr.flush()


def report(error: RouterError, target: str) -> None:
    """One line naming what failed (plus one line per field violation of INVALID_ARGUMENT)."""
    code, message = error.status_code, error.message
    if code is grpc.StatusCode.INVALID_ARGUMENT and error.field_violations:
        lines = [f"invalid argument ({len(error.field_violations)} field(s)):"]
        lines += [f"  {field}: {description}" for field, description in error.field_violations]
        sys.stderr.write("".join(f"llmctl: error: {line}\n" for line in lines[:1]))
        sys.stderr.write("".join(f"llmctl: {line}\n" for line in lines[1:]))
        sys.stderr.flush()
        return
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        error_line(f"invalid argument: {message}")
    elif code is grpc.StatusCode.FAILED_PRECONDITION:
        error_line(f"illegal transition: {message}")
    elif code is grpc.StatusCode.ABORTED:
        error_line(f"version conflict: {message}")
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        error_line(f"not authenticated: {message} (pass --token or set ${TOKEN_ENV})")
    elif code is grpc.StatusCode.PERMISSION_DENIED:
        error_line(f"permission denied: {message} (check --token or ${TOKEN_ENV})")
    elif code is grpc.StatusCode.UNAVAILABLE:
        error_line(f"control service unavailable at {target}: {message}")
    elif code is grpc.StatusCode.DEADLINE_EXCEEDED:
        error_line(f"control service at {target} did not answer in time: {message}")
    else:
        error_line(f"{code.name}: {message}" if message else code.name)
