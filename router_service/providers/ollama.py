"""Ollama's native API: ``/api/chat`` (NDJSON) and ``/api/embed``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import orjson

from llmcore.vocabulary import ProviderName
from router_service.errors import ErrorKind, RouterError
from router_service.providers._http import (
    engine_stream_error,
    finish_body,
    iter_line_batches,
    malformed,
    probe_get,
    status_error,
    transport_error,
    truncated,
)
from router_service.values import ChatCall, ChatChunk, EmbedCall, EmbedOutput, FinishReason

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}


class OllamaProvider:
    """Talks to one Ollama server through a shared pooled client."""

    def __init__(self, client: httpx.AsyncClient, keep_alive: str = "30m") -> None:
        self._client = client
        # Absolute once (relative to base_url, as httpx merges): httpx re-parses a relative URL
        # on every request.
        self._chat_url = client.base_url.join("api/chat")
        self._keep_alive = keep_alive

    @property
    def name(self) -> ProviderName:
        return "ollama"

    def _chat_body(self, call: ChatCall) -> bytes:
        opts: dict[str, Any] = {}
        o = call.options
        if o.max_tokens is not None:
            opts["num_predict"] = o.max_tokens
        if o.temperature is not None:
            opts["temperature"] = o.temperature
        if o.top_p is not None:
            opts["top_p"] = o.top_p
        if o.stop:
            opts["stop"] = list(o.stop)
        if o.seed is not None:
            opts["seed"] = o.seed
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "stream": True,
            "keep_alive": self._keep_alive,
        }
        if opts:
            body["options"] = opts
        return orjson.dumps(body)

    async def stream_chat(self, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        headers = {"content-type": "application/json", "x-request-id": call.request_id}
        req = self._client.build_request(
            "POST", self._chat_url, content=self._chat_body(call), headers=headers
        )
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "ollama", call.model) from exc
        try:
            if resp.status_code != 200:
                body = await resp.aread()
                raise status_error(
                    resp.status_code, body, "ollama", call.model, resp.headers.get("retry-after")
                )
            batches = iter_line_batches(resp.aiter_raw(), "ollama", call.model)
            async for lines in batches:
                chunk = ChatChunk()
                parts: list[str] = []
                for line in lines:
                    try:
                        obj = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise malformed("ollama", call.model, line) from exc
                    if not isinstance(obj, dict):
                        raise malformed("ollama", call.model, line)
                    # Ollama reports failures after the headers as an extra line.
                    err = obj.get("error")
                    if err is not None:
                        raise engine_stream_error("ollama", call.model, str(err))
                    msg = obj.get("message")
                    text = msg.get("content") if isinstance(msg, dict) else None
                    if text:
                        parts.append(text)
                        chunk.tokens += 1
                    if obj.get("done"):
                        chunk.done = True
                        chunk.finish_reason = _FINISH.get(obj.get("done_reason") or "", "stop")
                        # Counts are omitempty: absent means zero or unknown.
                        chunk.prompt_tokens = obj.get("prompt_eval_count")
                        chunk.completion_tokens = obj.get("eval_count")
                        break
                chunk.text = "".join(parts)
                if chunk.done:
                    await finish_body(batches)
                if chunk.text or chunk.done:
                    yield chunk
                if chunk.done:
                    return
            raise truncated("ollama", call.model)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "ollama", call.model) from exc
        finally:
            await resp.aclose()

    async def embed(self, call: EmbedCall) -> EmbedOutput:
        body = {
            "model": call.model,
            "input": list(call.inputs),
            "keep_alive": self._keep_alive,
            "truncate": True,
        }
        try:
            resp = await self._client.post(
                "/api/embed",
                content=orjson.dumps(body),
                headers={"content-type": "application/json", "x-request-id": call.request_id},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, "ollama", call.model) from exc
        if resp.status_code != 200:
            raise status_error(
                resp.status_code,
                resp.content,
                "ollama",
                call.model,
                resp.headers.get("retry-after"),
            )
        try:
            obj = orjson.loads(resp.content)
            vectors = obj["embeddings"]
            if not isinstance(vectors, list) or len(vectors) != len(call.inputs):
                raise ValueError("embeddings count does not match inputs")
            return EmbedOutput(
                vectors=[[float(x) for x in v] for v in vectors],
                prompt_tokens=int(obj.get("prompt_eval_count") or 0),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RouterError(
                ErrorKind.LLM_INVALID_RESPONSE,
                f"ollama sent an unusable embed response: {exc}",
                "ollama",
                call.model,
            ) from exc

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    async def probe(self) -> None:
        await probe_get(self._client, "/", "ollama")

    async def aclose(self) -> None:
        await self._client.aclose()
