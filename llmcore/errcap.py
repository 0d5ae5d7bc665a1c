"""Error details that stay small whatever the request (issue 21).

Error details travel in gRPC trailers, which clients cap at 16 kB (grpc's default): a request
with 10 000 bad fields used to come back as RESOURCE_EXHAUSTED instead of INVALID_ARGUMENT.
Both services keep the first :data:`MAX_VIOLATIONS` field violations, each field and
description cut at :data:`MAX_CHARS` characters, plus one ``(more)`` entry that counts the
rest: at most ~2.7 kB of details. Engine messages relayed to callers are cut the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_VIOLATIONS = 10
MAX_CHARS = 120
# An engine's own error message, relayed in our error's message.
MAX_ENGINE_MESSAGE = 512


def cut(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` at most ``limit`` characters long (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capped(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first (field, description) pairs, cut short, plus one counting the rest."""
    out: list[tuple[str, str]] = []
    more = 0
    for field, description in pairs:
        if len(out) < MAX_VIOLATIONS:
            out.append((cut(field), cut(description)))
        else:
            more += 1
    if more:
        out.append(("(more)", f"and {more} more violations"))
    return out
