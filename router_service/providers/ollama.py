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
from router_service.providers._logprobs import parse_logprobs
from router_service.providers._ollama_body import ollama_chat_body
from router_service.providers._toolcalls import ToolCallNormaliser
from router_service.values import ChatCall, ChatChunk, EmbedCall, EmbedOutput, FinishReason

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "unload": "cancelled"}


def _extras(
    msg: dict[str, Any],
    obj: dict[str, Any],
    chunk: ChatChunk,
    thinking: list[str],
    calls: ToolCallNormaliser,
    model: str,
) -> None:
    """The rarer parts of a line: thinking, whole tool calls, logprobs."""
    think = msg.get("thinking")
    if think:
        thinking.append(str(think))
    tool_calls = msg.get("tool_calls")
    if isinstance(tool_calls, list):
        for tc in tool_calls:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise malformed("ollama", model, b"tool_calls")
            args = fn.get("arguments")
            text = args if isinstance(args, str) else orjson.dumps(args or {}).decode()
            index = fn.get("index")
            chunk.tool_calls.append(
                calls.whole(
                    index if isinstance(index, int) else None,
                    tc.get("id") if isinstance(tc.get("id"), str) else None,
                    fn["name"],
                    text,
                )
            )
    lps = obj.get("logprobs")
    if isinstance(lps, list):
        chunk.logprobs.extend(parse_logprobs(lps))


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
        return orjson.dumps(ollama_chat_body(call, self._keep_alive))

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
            calls = ToolCallNormaliser(call.request_id)
            async for lines in batches:
                chunk = ChatChunk()
                parts: list[str] = []
                thinking: list[str] = []
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
                    text = None
                    if isinstance(msg, dict):
                        text = msg.get("content")
                        # More than role and content (thinking, tool calls), or logprobs.
                        if len(msg) > 2 or "logprobs" in obj:
                            _extras(msg, obj, chunk, thinking, calls, call.model)
                    if text:
                        parts.append(text)
                        chunk.tokens += 1
                    if obj.get("done"):
                        chunk.done = True
                        raw = str(obj.get("done_reason") or "")
                        chunk.raw_finish_reason = raw
                        chunk.finish_reason = _FINISH.get(raw, "stop")
                        # Ollama says "stop" after tool calls; the API says TOOL_CALLS.
                        if calls.count and chunk.finish_reason == "stop":
                            chunk.finish_reason = "tool_calls"
                        # Counts are omitempty: absent means zero or unknown.
                        chunk.prompt_tokens = obj.get("prompt_eval_count")
                        chunk.completion_tokens = obj.get("eval_count")
                        break
                chunk.text = "".join(parts)
                if thinking:
                    chunk.reasoning = "".join(thinking)
                    chunk.reasoning_tokens = len(thinking)
                if chunk.done:
                    await finish_body(batches)
                if chunk.text or chunk.done or chunk.reasoning or chunk.tool_calls:
                    yield chunk
                if chunk.done:
                    return
            raise truncated("ollama", call.model)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "ollama", call.model) from exc
        finally:
            await resp.aclose()

    async def embed(self, call: EmbedCall) -> EmbedOutput:
        body: dict[str, Any] = {
            "model": call.model,
            "input": list(call.inputs),
            "keep_alive": self._keep_alive,
            "truncate": call.truncate,
        }
        if call.dimensions is not None:
            body["dimensions"] = call.dimensions
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
