"""How llmctl prints: tables and key/value blocks on ``rich``, JSON documents, --watch views.

Two audiences, one code path. On a terminal the tables are rich's (bold headers under a rule,
colour where the terminal has it, cells folded to the terminal's width) and a --watch view
redraws in place with ``rich.live.Live``. Anywhere else (a pipe, a file, the tests) the output
is plain and stable, for scripts: no colour and no control codes, left-aligned columns two
spaces apart, no trailing blanks, never wrapped whatever the width, and a --watch view appends
each change under a ``--- time ---`` header instead of redrawing. Cells are never read as rich
markup or emoji codes (``[bold]`` in a reason stays ``[bold]``).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self, TextIO

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from clients.cli._common import print_json

# Wide enough that rich never wraps or truncates a plain table (its console width is a limit).
_UNLIMITED = 1 << 20


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout) is a terminal, i.e. gets the styled output."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _render(renderable: Table, styled: bool) -> list[str]:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=styled,
        no_color=not styled,
        color_system="auto" if styled else None,
        width=shutil.get_terminal_size().columns if styled else _UNLIMITED,
        markup=False,
        emoji=False,
        highlight=False,
    )
    console.print(renderable)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def _table(styled: bool, *, header: bool) -> Table:
    return Table(
        box=box.SIMPLE_HEAD if styled and header else None,
        show_header=header,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold" if styled else "",
    )


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, styled: bool | None = None
) -> list[str]:
    """A table as lines. Plain (``styled`` false; default: stdout is not a terminal): left-aligned
    columns two spaces apart, the header first, no trailing blanks."""
    styled = is_terminal() if styled is None else styled
    table = _table(styled, header=True)
    for name in headers:
        table.add_column(Text(name), no_wrap=not styled, overflow="fold" if styled else "ignore")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return _render(table, styled)


def format_pairs(rows: Sequence[tuple[str, str]], *, styled: bool | None = None) -> list[str]:
    """``key   value`` lines with the values aligned (the keys bold on a terminal)."""
    styled = is_terminal() if styled is None else styled
    table = _table(styled, header=False)
    table.add_column(style="bold" if styled else "", no_wrap=True)
    table.add_column(no_wrap=not styled, overflow="fold" if styled else "ignore")
    for key, value in rows:
        table.add_row(Text(key), Text(value))
    return _render(table, styled) if rows else []


def write_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def emit(args: argparse.Namespace, document: dict[str, Any], lines: Sequence[str]) -> None:
    """``document`` as JSON with ``-o json``, else ``lines``."""
    if args.output == "json":
        print_json(document)
    else:
        write_lines(lines)


class WatchView:
    """Where a --watch view draws each new state (``with WatchView() as view: view.show(...)``).

    On a terminal, ``rich.live.Live`` redraws the block in place under a ``--- time ---`` header
    (the time of the last change). Elsewhere each state is appended, blank-line separated,
    under its own header: a log that scripts and tests read line by line.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = sys.stdout if stream is None else stream
        self._live: Live | None = None
        self._shown = 0

    def __enter__(self) -> Self:
        if is_terminal(self._stream):
            console = Console(file=self._stream, markup=False, emoji=False, highlight=False)
            self._live = Live(console=console, auto_refresh=False, redirect_stdout=False)
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def show(self, lines: Sequence[str]) -> None:
        """Draws ``lines`` (already formatted, styled on a terminal) as the current state."""
        header = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} ---"
        if self._live is not None:
            self._live.update(Text.from_ansi("\n".join([header, *lines])), refresh=True)
        else:
            block = [*([""] if self._shown else []), header, *lines]
            self._stream.write("".join(f"{line}\n" for line in block))
            self._stream.flush()
        self._shown += 1
