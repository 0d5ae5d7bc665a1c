"""OpenAI-compatible engines (vLLM): ``/v1/chat/completions`` (SSE) and ``/v1/embeddings``."""

from __future__ import annotations

import base64
import sys
from array import array
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
    message_of,
    probe_get,
    status_error,
    transport_error,
    truncated,
)
from router_service.values import ChatCall, ChatChunk, EmbedCall, EmbedOutput, FinishReason

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
_DONE = b"[DONE]"


class OpenAICompatProvider:
    """Talks to one vLLM (or other OpenAI-compatible) server through a shared pooled client."""

    def __init__(self, client: httpx.AsyncClient, name: ProviderName = "vllm") -> None:
        self._client = client
        # Absolute once (relative to base_url, as httpx merges): httpx re-parses a relative URL
        # on every request.
        self._chat_url = client.base_url.join("v1/chat/completions")
        self._name: ProviderName = name

    @property
    def name(self) -> ProviderName:
        return self._name

    @staticmethod
    def _chat_body(call: ChatCall) -> bytes:
        o = call.options
        body: dict[str, Any] = {
            "model": call.model,
            "messages": [{"role": m.role, "content": m.content} for m in call.messages],
            "stream": True,
            # Without this vLLM sends no token counts on a stream.
            "stream_options": {"include_usage": True},
        }
        if o.max_tokens is not None:
            body["max_tokens"] = o.max_tokens
        if o.temperature is not None:
            body["temperature"] = o.temperature
        if o.top_p is not None:
            body["top_p"] = o.top_p
        if o.stop:
            body["stop"] = list(o.stop)
        if o.seed is not None:
            body["seed"] = o.seed
        if call.continue_final:
            # vLLM continues the final assistant message instead of starting a new turn.
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return orjson.dumps(body)

    async def stream_chat(self, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        name = self._name
        headers = {"content-type": "application/json", "x-request-id": call.request_id}
        req = self._client.build_request(
            "POST", self._chat_url, content=self._chat_body(call), headers=headers
        )
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise transport_error(exc, name, call.model) from exc
        finish: FinishReason = ""
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        try:
            if resp.status_code != 200:
                body = await resp.aread()
                raise status_error(
                    resp.status_code, body, name, call.model, resp.headers.get("retry-after")
                )
            batches = iter_line_batches(resp.aiter_raw(), name, call.model)
            async for lines in batches:
                # One chunk per network read: when the relay is behind, a read holds many
                # events and they leave as one message. The loop is the relay's per-token cost
                # when engines burst (bench/router_overhead.py --py-spy): keep it lean.
                parts: list[str] = []
                done = False
                for line in lines:
                    # Comments (":...") and fields other than data (event:, id:) carry nothing
                    # we use.
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:]  # orjson accepts the surrounding whitespace
                    if len(payload) < 16 and payload.strip() == _DONE:
                        done = True
                        break
                    try:
                        obj = orjson.loads(payload)
                    except orjson.JSONDecodeError as exc:
                        raise malformed(name, call.model, line) from exc
                    if type(obj) is not dict:
                        raise malformed(name, call.model, line)
                    if "error" in obj or obj.get("object") == "error":
                        err = message_of(obj)
                        if err is not None:
                            raise engine_stream_error(name, call.model, err)
                    choices = obj.get("choices")
                    if choices:
                        for choice in choices:
                            delta = choice.get("delta")
                            if delta:
                                text = delta.get("content")
                                if text:
                                    parts.append(text)
                            reason = choice.get("finish_reason")
                            if reason:
                                finish = _FINISH.get(reason, "stop")
                    usage = obj.get("usage")
                    if usage and type(usage) is dict:
                        prompt_tokens = usage.get("prompt_tokens")
                        completion_tokens = usage.get("completion_tokens")
                if done:
                    await finish_body(batches)
                    yield ChatChunk(
                        text="".join(parts),
                        tokens=len(parts),
                        done=True,
                        finish_reason=finish or "stop",
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                    )
                    return
                if parts:
                    yield ChatChunk(text="".join(parts), tokens=len(parts))
            raise truncated(name, call.model)
        except httpx.HTTPError as exc:
            raise transport_error(exc, name, call.model) from exc
        finally:
            await resp.aclose()

    async def embed(self, call: EmbedCall) -> EmbedOutput:
        # base64 (float32, little-endian, as OpenAI and vLLM encode it): a fifth of the bytes of
        # JSON floats and no float parsing; decoding a 32 x 1024 batch cost the router 1.9 ms of
        # CPU as JSON, 1.1 ms this way. float32 is all the proto's `float` carries anyway.
        body = {"model": call.model, "input": list(call.inputs), "encoding_format": "base64"}
        try:
            resp = await self._client.post(
                "/v1/embeddings",
                content=orjson.dumps(body),
                headers={"content-type": "application/json", "x-request-id": call.request_id},
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._name, call.model) from exc
        if resp.status_code != 200:
            raise status_error(
                resp.status_code,
                resp.content,
                self._name,
                call.model,
                resp.headers.get("retry-after"),
            )
        try:
            obj = orjson.loads(resp.content)
            data = sorted(obj["data"], key=lambda d: int(d["index"]))
            if len(data) != len(call.inputs):
                raise ValueError("embeddings count does not match inputs")
            usage = obj.get("usage") or {}
            return EmbedOutput(
                vectors=[_vector(d["embedding"]) for d in data],
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RouterError(
                ErrorKind.LLM_INVALID_RESPONSE,
                f"{self._name} sent an unusable embeddings response: {exc}",
                self._name,
                call.model,
            ) from exc

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    async def probe(self) -> None:
        await probe_get(self._client, "/health", self._name)

    async def aclose(self) -> None:
        await self._client.aclose()


def _vector(value: Any) -> list[float]:
    """One embedding as sent: base64 of little-endian float32s, or (from a server that ignores
    ``encoding_format``) a JSON list of numbers."""
    if isinstance(value, str):
        arr = array("f")
        arr.frombytes(base64.b64decode(value, validate=True))  # ValueError when malformed
        if sys.byteorder == "big":
            arr.byteswap()
        # A list, not the array: protobuf fills a repeated float from a list twice as fast.
        return arr.tolist()
    return [float(x) for x in value]
