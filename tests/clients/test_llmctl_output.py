"""llmctl's printing on rich: plain and stable off a terminal, styled and redrawn on one; the
one exit-status rule; the public API the drill uses instead of private modules."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import grpc
import pytest

from clients.cli import api
from clients.cli._errors import exit_status
from clients.cli._output import WatchView, format_pairs, format_table
from clients.llm import InvalidRequestError, LLMUnavailableError, RouterError

ROOT = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_tables_are_aligned_two_spaces_apart_without_markup_or_wrapping() -> None:
    long = "x" * 300  # wider than any terminal: a plain table never wraps
    lines = format_table(
        ["NAME", "WHY"], [["a", "[bold]not markup[/] :smile:"], ["longer", long]], styled=False
    )
    assert lines == [
        "NAME    WHY",
        "a       [bold]not markup[/] :smile:",
        f"longer  {long}",
    ]
    assert format_pairs([("key", "v"), ("longer key", "")], styled=False) == [
        "key         v",
        "longer key",
    ]
    assert format_pairs([], styled=False) == []


def test_styled_tables_carry_terminal_codes_and_the_same_cells() -> None:
    lines = format_table(["NAME", "WHY"], [["a", "b"]], styled=True)
    assert any("\x1b[1m" in line for line in lines)  # bold header
    assert any("─" in line for line in lines)  # the rule under the header
    assert any("a" in line and "b" in line for line in lines)


def test_watch_view_appends_blocks_off_a_terminal() -> None:
    out = io.StringIO()
    with WatchView(out) as view:
        view.show(["one"])
        view.show(["two"])
    lines = out.getvalue().splitlines()
    assert [line for line in lines if not line.startswith("--- ")] == ["one", "", "two"]
    assert sum(line.startswith("--- ") for line in lines) == 2
    assert "\x1b" not in out.getvalue()


def test_watch_view_redraws_in_place_on_a_terminal() -> None:
    out = _Terminal()
    with WatchView(out) as view:
        view.show(["first state"])
        view.show(["second state"])
    text = out.getvalue()
    assert "first state" in text
    assert "second state" in text
    # rich.live moves the cursor back up over the previous block and erases it.
    assert "\x1b[1A" in text or "\x1b[A" in text
    assert "\x1b[2K" in text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequestError("bad"), 2),
        # The router's ErrorInfo can say INVALID_REQUEST under another status: still 2.
        (InvalidRequestError("bad", status_code=grpc.StatusCode.UNKNOWN), 2),
        (RouterError("x", status_code=grpc.StatusCode.INVALID_ARGUMENT), 2),
        (RouterError("x", status_code=grpc.StatusCode.FAILED_PRECONDITION), 3),
        (RouterError("x", status_code=grpc.StatusCode.ABORTED), 4),
        (RouterError("x", status_code=grpc.StatusCode.UNAUTHENTICATED), 5),
        (RouterError("x", status_code=grpc.StatusCode.PERMISSION_DENIED), 5),
        (LLMUnavailableError("x", status_code=grpc.StatusCode.UNAVAILABLE), 1),
        (RouterError("x", status_code=grpc.StatusCode.INTERNAL), 1),
    ],
)
def test_one_exit_status_rule_for_every_command(error: RouterError, status: int) -> None:
    assert exit_status(error) == status
    assert api.exit_status(error) == status


def test_tools_use_the_public_cli_api_not_private_modules() -> None:
    private: list[str] = []
    for path in sorted((ROOT / "llmtools").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clients.cli._"):
                private.append(f"{path.relative_to(ROOT)}: {node.module}")
    assert private == []
    assert set(api.__all__) <= set(dir(api))
