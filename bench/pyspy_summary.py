"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the busy samples are.

    .venv/bin/python -m bench.pyspy_summary .run/profile-paced.txt [--top 30]

Samples whose innermost frame is an idle wait (epoll, futex, condition variables) are dropped,
so percentages are of the time the process was working. Shows the share of each thread kind
(the event loop versus other threads), of each innermost file or library, of each innermost
function, and the inclusive share of every function on the stack.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_IDLE = ("epoll_wait", "epoll_pwait", "pthread_cond", "__futex", "futex", "poll ", "select ")
_WHERE = re.compile(r"\(([^)]*)\)")


def summarize(path: Path, top: int = 25) -> str:
    by_thread: Counter[str] = Counter()
    by_lib: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = 0
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        if leaf.startswith(_IDLE):
            idle += n
            continue
        busy += n
        m = _WHERE.search(leaf)
        lib = m.group(1).rsplit("/", 1)[-1].split(":")[0] if m else leaf
        by_lib[lib] += n
        by_leaf[f"{leaf.split(' (')[0]} ({lib})"] += n
        kind = "other threads" if any(f.startswith("Thread.run") for f in frames) else "event loop"
        by_thread[kind] += n
        for name in {f.split(" (")[0] for f in frames}:
            inclusive[name] += n
    if not busy:
        return f"{path}: no busy samples"
    out = [f"{path}: {busy} busy samples ({idle} idle dropped)"]
    for title, counter, k in (
        ("thread", by_thread, 5),
        ("innermost file / library", by_lib, top),
        ("innermost function (self time)", by_leaf, top),
        ("inclusive", inclusive, top),
    ):
        out.append(f"--- {title}")
        out += [f"{100 * v / busy:5.1f}%  {key}" for key, v in counter.most_common(k)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    print(summarize(args.profile, args.top))


if __name__ == "__main__":
    main()
