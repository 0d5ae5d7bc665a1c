"""A real HTTP engine (aiohttp, port 0) that misbehaves on purpose: the fault matrix's engine.

Unlike ``fake_engine`` (httpx MockTransport) it runs over real sockets, so the router's own
transport, pool and timeouts are what is tested: a stalled socket, headers then silence, a
connection reset, a byte trickle. It speaks Ollama's NDJSON ``/api/chat`` or the OpenAI SSE
``/v1/chat/completions`` and answers continuation requests (a final assistant message, with
vLLM's ``continue_final_message``) with the rest of its answer, so a continued stream can be
checked for no repeat and no gap.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ANSWER = ["The", " sky", " is", " blue", " because", " of", " Rayleigh", " scattering", "."]


@dataclass
class Fault:
    """What one request gets. ``kind``:

    - ``ok``: the answer, ``itl_s`` between tokens;
    - ``hang``: the request is read, nothing is ever sent (not even headers);
    - ``headers``: 200 headers, then silence;
    - ``stall``: ``after`` tokens, then silence (the connection stays open);
    - ``trickle``: ``after`` tokens, then one byte of the next line every ``trickle_s``;
    - ``reset``: ``after`` tokens, then the connection is aborted;
    - ``html502``: a 502 with an HTML page (a proxy in front of a dead engine);
    - ``empty``: 200, then an empty delta every ``itl_s`` forever.
    """

    kind: str = "ok"
    after: int = 1
    itl_s: float = 0.0
    trickle_s: float = 0.2
    tokens: list[str] = field(default_factory=lambda: list(ANSWER))


class FaultEngine:
    def __init__(self, flavor: str) -> None:
        assert flavor in ("ollama", "vllm")
        self.flavor = flavor
        self.default = Fault()
        self.queue: deque[Fault] = deque()
        self.bodies: list[dict[str, Any]] = []
        self.health_ok = True
        self.active = 0  # chat handlers running now
        self.disconnected = 0  # chat handlers that ended because the client left
        self.changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *faults: Fault) -> None:
        self.queue.extend(faults)

    async def start(self) -> FaultEngine:
        app = web.Application()
        app.router.add_get("/", self._health)
        app.router.add_get("/health", self._health)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/v1/chat/completions", self._chat)
        # The handler is cancelled when its client disconnects: that is how "no leaked
        # connection" is observed (and how real engines abort a generation).
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_idle(self, within: float = 5.0) -> None:
        """Until no chat handler runs (every stream the router left was closed)."""
        await self.wait_for(lambda: self.active == 0, within)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            async with self.changed:
                await self.changed.wait_for(predicate)

    async def _health(self, request: web.Request) -> web.Response:
        if not self.health_ok:
            return web.Response(status=503, text="unhealthy")
        return web.Response(text="Ollama is running" if self.flavor == "ollama" else "")

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        fault = self.queue.popleft() if self.queue else self.default
        self.active += 1
        await self._notify()
        try:
            return await self._answer(request, body, fault)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected += 1
            raise
        finally:
            self.active -= 1
            await self._notify()

    def _continued_from(self, body: dict[str, Any]) -> str:
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "assistant":
            return ""
        if self.flavor == "vllm":
            assert body.get("continue_final_message") is True, body
            assert body.get("add_generation_prompt") is False, body
        return str(messages[-1].get("content", ""))

    async def _answer(
        self, request: web.Request, body: dict[str, Any], fault: Fault
    ) -> web.StreamResponse:
        if fault.kind == "hang":
            await asyncio.Event().wait()
        if fault.kind == "html502":
            return web.Response(
                status=502,
                content_type="text/html",
                text="<html><head><title>502 Bad Gateway</title></head>"
                "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                "</body></html>",
            )
        resp = web.StreamResponse(
            headers={
                "content-type": "application/x-ndjson"
                if self.flavor == "ollama"
                else "text/event-stream"
            }
        )
        await resp.prepare(request)
        if fault.kind == "headers":
            await asyncio.Event().wait()
        if fault.kind == "empty":
            while True:
                await resp.write(self._line(""))
                await asyncio.sleep(fault.itl_s or 0.02)
        tokens = list(fault.tokens)
        prefix = self._continued_from(body)
        while prefix and tokens and prefix.startswith(tokens[0]):
            prefix = prefix[len(tokens[0]) :]
            tokens.pop(0)
        for i, tok in enumerate(tokens):
            if i == fault.after and fault.kind in ("stall", "trickle", "reset"):
                await self._fault_after(request, resp, fault, tok)
            await resp.write(self._line(tok))
            if fault.itl_s:
                await asyncio.sleep(fault.itl_s)
        await resp.write(self._done(len(tokens)))
        await resp.write_eof()
        return resp

    async def _fault_after(
        self, request: web.Request, resp: web.StreamResponse, fault: Fault, tok: str
    ) -> None:
        if fault.kind == "stall":
            await asyncio.Event().wait()
        if fault.kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            await asyncio.Event().wait()  # cancelled: the connection is gone
        for byte in self._line(tok):  # trickle: one byte at a time, never a whole line soon
            await resp.write(bytes([byte]))
            await asyncio.sleep(fault.trickle_s)

    def _line(self, text: str) -> bytes:
        if self.flavor == "ollama":
            obj: dict[str, Any] = {
                "model": "m",
                "message": {"role": "assistant", "content": text},
                "done": False,
            }
            return json.dumps(obj).encode() + b"\n"
        chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def _done(self, n: int) -> bytes:
        if self.flavor == "ollama":
            obj = {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 5,
                "eval_count": n,
            }
            return json.dumps(obj).encode() + b"\n"
        end = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {
            "id": "c",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5},
        }
        return (
            b"data: "
            + json.dumps(end).encode()
            + b"\n\ndata: "
            + json.dumps(usage).encode()
            + b"\n\ndata: [DONE]\n\n"
        )
