"""A progress bar while requests run: tqdm when it is installed, else a plain counter."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Protocol, TextIO

from llmtools.llmbench._targets import Sample


class Progress(Protocol):
    def __call__(self, sample: Sample) -> None: ...

    def close(self) -> None: ...


class _Silent:
    def __call__(self, sample: Sample) -> None:
        pass

    def close(self) -> None:
        pass


class _Counter:
    """``label: done/total (errors)``, rewritten in place on a terminal, else every 10 %."""

    def __init__(self, label: str, total: int, out: TextIO) -> None:
        self._label = label
        self._total = total
        self._out = out
        self._tty = out.isatty()
        self._done = 0
        self._errors = 0
        self._step = max(1, total // 10)

    def __call__(self, sample: Sample) -> None:
        self._done += 1
        self._errors += 0 if sample.ok else 1
        if self._tty or self._done % self._step == 0 or self._done == self._total:
            end = "" if self._tty else "\n"
            self._out.write(
                f"\r{self._label}: {self._done}/{self._total} ({self._errors} errors){end}"
            )
            self._out.flush()

    def close(self) -> None:
        if self._tty:
            self._out.write("\n")
            self._out.flush()


class _Tqdm:
    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._errors = 0

    def __call__(self, sample: Sample) -> None:
        if not sample.ok:
            self._errors += 1
            self._bar.set_postfix(errors=self._errors, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def make_progress(label: str, total: int, enabled: bool, out: TextIO | None = None) -> Progress:
    if not enabled:
        return _Silent()
    stream = out if out is not None else sys.stderr
    try:
        # Optional (the bench extra); imported by name so type checks pass without it.
        tqdm: Any = importlib.import_module("tqdm")
    except ImportError:
        return _Counter(label, total, stream)
    return _Tqdm(tqdm.tqdm(total=total, desc=label, unit="req", file=stream, dynamic_ncols=True))
