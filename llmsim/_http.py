"""Small HTTP helpers shared by the flavours and the admin API."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web

__all__ = ["BodyError", "json_response", "now_rfc3339", "read_json", "rfc3339"]


class BodyError(Exception):
    """Request body missing or not JSON; ``kind`` is "missing" or "invalid"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise BodyError("missing", "missing request body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyError("invalid", str(exc)) from None


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")


@lru_cache(maxsize=4)
def _second_prefix(sec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def rfc3339(t: float) -> str:
    """UTC timestamp with microseconds, as Go's RFC3339Nano prints it (e.g. ...45.499127Z)."""
    sec = int(t)
    return f"{_second_prefix(sec)}.{int((t - sec) * 1_000_000):06d}Z"


def now_rfc3339() -> str:
    return rfc3339(time.time())
