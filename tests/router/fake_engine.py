"""A scriptable Ollama / vLLM engine behind ``httpx.MockTransport`` for the router's tests.

Each request takes the next ``Script`` queued for its path (or the default one) and streams
its tokens in the engine's real wire format. The engine records what it received and whether
the router closed the stream early.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Script:
    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    status: int = 200
    error_body: dict[str, Any] | None = None
    # After this many tokens: send an engine error line / a malformed line / end abruptly / hang.
    error_after: int | None = None
    malformed_after: int | None = None
    truncate_after: int | None = None
    hang_after: int | None = None
    connect_error: bool = False
    finish_reason: str = "stop"
    prompt_tokens: int = 7
    embed_dim: int = 1024  # mxbai-embed-large's, which the router checks
    flat_vllm_error: bool = False


@dataclass
class Seen:
    path: str
    headers: httpx.Headers
    body: dict[str, Any]


class FakeEngine:
    def __init__(self, flavor: str) -> None:
        self.flavor = flavor
        self.default = Script()
        self.queue: deque[Script] = deque()
        self.seen: list[Seen] = []
        self.closed_early = asyncio.Event()
        self.streaming = asyncio.Event()
        self.probes = 0
        self.down = False

    def push(self, *scripts: Script) -> None:
        self.queue.extend(scripts)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.MockTransport(self.handle), base_url=f"http://{self.flavor}.test"
        )

    @property
    def models_seen(self) -> list[str]:
        return [s.body.get("model", "") for s in self.seen]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path in ("/", "/health"):
            self.probes += 1
            if self.down:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(200, text="Ollama is running" if self.flavor == "ollama" else "")
        body = json.loads(await request.aread() or b"{}")
        self.seen.append(Seen(request.url.path, request.headers, body))
        script = self.queue.popleft() if self.queue else self.default
        if script.connect_error:
            raise httpx.ConnectError("connection refused", request=request)
        if script.status != 200:
            return httpx.Response(script.status, json=script.error_body or self._error("boom"))
        if request.url.path in ("/api/embed", "/v1/embeddings"):
            return self._embed(body, script)
        lines = self._ollama_lines if self.flavor == "ollama" else self._sse_lines
        return httpx.Response(200, content=self._stream(lines(script), script))

    def _error(self, message: str, code: int = 500) -> dict[str, Any]:
        if self.flavor == "ollama":
            return {"error": message}
        return {
            "error": {
                "message": message,
                "type": "InternalServerError",
                "param": None,
                "code": code,
            }
        }

    async def _stream(self, lines: list[bytes], script: Script) -> AsyncIterator[bytes]:
        self.streaming.set()
        try:
            for line in lines:
                if line == b"<hang>":
                    await asyncio.Event().wait()
                if line == b"<truncate>":
                    return
                yield line
                await asyncio.sleep(0)
        except GeneratorExit:
            self.closed_early.set()
            raise
        except asyncio.CancelledError:
            self.closed_early.set()
            raise

    def _events(self, script: Script) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for i, tok in enumerate(script.tokens):
            for kind, after in (
                ("error", script.error_after),
                ("malformed", script.malformed_after),
                ("truncate", script.truncate_after),
                ("hang", script.hang_after),
            ):
                if after == i:
                    out.append((kind, ""))
                    return out
            out.append(("token", tok))
        return [*out, ("done", "")]

    def _ollama_lines(self, script: Script) -> list[bytes]:
        lines: list[bytes] = []
        for kind, tok in self._events(script):
            if kind == "token":
                obj: dict[str, Any] = {
                    "model": "m",
                    "message": {"role": "assistant", "content": tok},
                    "done": False,
                }
                lines.append(json.dumps(obj).encode() + b"\n")
            elif kind == "done":
                obj = {
                    "model": "m",
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": script.finish_reason,
                    "prompt_eval_count": script.prompt_tokens,
                    "eval_count": len(script.tokens),
                    "eval_duration": 1_000_000,
                }
                lines.append(json.dumps(obj).encode() + b"\n")
            else:
                lines.append(self._special(kind))
        return lines

    def _sse_lines(self, script: Script) -> list[bytes]:
        def data(obj: Any) -> bytes:
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        lines = [
            data(
                {
                    "id": "c",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        ]
        for kind, tok in self._events(script):
            if kind == "token":
                lines.append(
                    data(
                        {
                            "id": "c",
                            "choices": [
                                {"index": 0, "delta": {"content": tok}, "finish_reason": None}
                            ],
                        }
                    )
                )
            elif kind == "done":
                lines.append(
                    data(
                        {
                            "id": "c",
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": ""},
                                    "finish_reason": script.finish_reason,
                                }
                            ],
                        }
                    )
                )
                n = len(script.tokens)
                lines.append(
                    data(
                        {
                            "id": "c",
                            "choices": [],
                            "usage": {
                                "prompt_tokens": script.prompt_tokens,
                                "completion_tokens": n,
                                "total_tokens": n + script.prompt_tokens,
                            },
                        }
                    )
                )
                lines.append(b"data: [DONE]\n\n")
            else:
                lines.append(self._special(kind, script))
        return lines

    def _special(self, kind: str, script: Script | None = None) -> bytes:
        if kind == "error":
            if self.flavor == "ollama":
                return b'{"error":"an error was encountered while running the model"}\n'
            err: Any = self._error("engine exploded")
            if script is not None and script.flat_vllm_error:
                err = {
                    "object": "error",
                    "message": "engine exploded",
                    "type": "InternalServerError",
                    "param": None,
                    "code": 500,
                }
            return b"data: " + json.dumps(err).encode() + b"\n\ndata: [DONE]\n\n"
        if kind == "malformed":
            return b"data: {not json\n\n" if self.flavor == "vllm" else b"{not json\n"
        return f"<{kind}>".encode()

    def _embed(self, body: dict[str, Any], script: Script) -> httpx.Response:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vecs = [[float(i + 1)] + [0.0] * (script.embed_dim - 1) for i in range(len(inputs))]
        if self.flavor == "ollama":
            return httpx.Response(
                200,
                json={
                    "model": body["model"],
                    "embeddings": vecs,
                    "prompt_eval_count": 3 * len(inputs),
                },
            )
        data = [
            {"index": i, "object": "embedding", "embedding": v}
            for i, v in reversed(list(enumerate(vecs)))
        ]
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)},
            },
        )
