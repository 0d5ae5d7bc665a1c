"""Process logging set-up for the services' ``main``: one format, and the HTTP libraries quiet.

httpx logs one INFO line per request ("HTTP Request: GET .../health 200"); the router and the
control service probe each engine every few seconds, so at INFO ``make run`` would scroll a line a
second per engine. Engine trouble is logged by the services themselves (a probe that changes an
engine's state, a failed call), so httpx and httpcore are kept at WARNING.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_LOGGERS = ("httpx", "httpcore")


def configure_logging(level: str) -> None:
    """Root logging at ``level`` (a name such as "INFO"); the HTTP client libraries at WARNING
    unless ``level`` is DEBUG, when every request is worth seeing."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
