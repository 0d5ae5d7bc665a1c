"""Admin endpoints under ``/sim/`` (same port as the engine API): faults, stats, request log."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from llmsim._http import BodyError, json_response, read_json
from llmsim._state import SimContext

__all__ = ["AdminApi"]


class AdminApi:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/sim/faults", self.get_faults),
            web.put("/sim/faults", self.put_faults),
            web.post("/sim/reset", self.reset),
            web.get("/sim/stats", self.stats),
            web.get("/sim/requests", self.requests),
        ]

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.faults.model_dump())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Partial update: only the keys in the body change. Unknown keys are a 400."""
        try:
            body = await read_json(request)
        except BodyError as exc:
            return json_response({"error": exc.message}, 400)
        if not isinstance(body, dict):
            return json_response({"error": "body must be a JSON object"}, 400)
        try:
            self.ctx.faults.update(body)
        except ValidationError as exc:
            return json_response(
                {"error": exc.errors(include_url=False, include_context=False)}, 400
            )
        return json_response(self.ctx.faults.model_dump())

    async def reset(self, request: web.Request) -> web.Response:
        """Clear faults, counters, metrics, the prefix cache and the request log."""
        ctx = self.ctx
        ctx.faults.clear()
        ctx.stats.reset()
        ctx.log.clear()
        for eng in ctx.engines.values():
            eng.reset()
        return json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.ctx.stats.to_dict())

    async def requests(self, request: web.Request) -> web.Response:
        """Most recent last; ``?limit=N`` keeps the last N."""
        entries = self.ctx.log.entries()
        limit = request.query.get("limit")
        if limit is not None and limit.isdigit():
            entries = entries[-int(limit) :] if int(limit) else []
        return json_response({"requests": entries})
