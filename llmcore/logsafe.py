"""Strings from the network, made safe to log: one line, printable, bounded.

A router id or a NACK reason with a newline would otherwise forge log lines ("router r1
connected\\nERROR ..."), and a megabyte reason would flood the log. Control and other
non-printable characters are written as escapes (``\\n``, ``\\x1b``), the text is cut at
``limit`` characters with a note of the full length.
"""

from __future__ import annotations

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def safe(text: object, limit: int = 200) -> str:
    """``text`` as one printable, bounded line (anything not a string is ``str()``-ed first)."""
    s = text if isinstance(text, str) else str(text)
    cut = len(s) > limit
    out = []
    for ch in s[:limit] if cut else s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    if cut:
        out.append(f"...[{len(s)} chars]")
    return "".join(out)
