"""Where llmctl's bearer token comes from when ``--token`` is not given.

``$LLMCTL_TOKEN``; else the file ``$LLMCTL_TOKEN_FILE`` names (set but empty: none); else
``.run/llmctl.token`` in the working directory, which ``make run`` writes (the operator token of
its generated local credentials, docs/security.md), so ``llmctl`` works against ``make run``
without flags. The file's first line is the token.
"""

from __future__ import annotations

import os
from pathlib import Path

TOKEN_ENV = "LLMCTL_TOKEN"
TOKEN_FILE_ENV = "LLMCTL_TOKEN_FILE"
DEFAULT_TOKEN_FILE = Path(".run") / "llmctl.token"


def default_token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return token
    named = os.environ.get(TOKEN_FILE_ENV)
    path = Path(named) if named else None if named is not None else DEFAULT_TOKEN_FILE
    if path is None:
        return ""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    return lines[0].strip() if lines else ""
