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
from router_service.providers._logprobs import parse_logprobs
from router_service.providers._openai_body import openai_chat_body
from router_service.providers._toolcalls import ToolCallNormaliser
from router_service.values import ChatCall, ChatChunk, EmbedCall, EmbedOutput, FinishReason

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "abort": "cancelled",
}
_DONE = b"[DONE]"


def _delta_extras(
    delta: dict[str, Any],
    out: ChatChunk,
    calls: ToolCallNormaliser,
    name: ProviderName,
    model: str,
) -> None:
    # vLLM's reasoning parser writes `reasoning`; older versions and llama.cpp
    # `reasoning_content` (some send both with the same text: take one).
    think = delta.get("reasoning") or delta.get("reasoning_content")
    if think:
        out.reasoning += str(think)
        out.reasoning_tokens += 1
    tool_calls = delta.get("tool_calls")
    if tool_calls:
        if not isinstance(tool_calls, list):
            raise malformed(name, model, b"tool_calls")
        for tc in tool_calls:
            if not isinstance(tc, dict):
                raise malformed(name, model, b"tool_calls")
            fn = tc.get("function") or {}
            index = tc.get("index")
            args = fn.get("arguments")
            out.tool_calls.append(
                calls.fragment(
                    index if isinstance(index, int) else None,
                    tc.get("id") if isinstance(tc.get("id"), str) else None,
                    fn.get("name") if isinstance(fn.get("name"), str) else None,
                    args if isinstance(args, str) else ("" if args is None else str(args)),
                )
            )


def _finish(end: ChatChunk, reason: str, stop_reason: Any) -> None:
    end.raw_finish_reason = reason
    end.finish_reason = _FINISH.get(reason, "stop")
    # vLLM: the matched stop string, or a stop token id (an int: not a string we report).
    if isinstance(stop_reason, str):
        end.stop_sequence = stop_reason


def _copy_end(end: ChatChunk, chunk: ChatChunk) -> None:
    chunk.done = True
    chunk.finish_reason = end.finish_reason or "stop"
    chunk.raw_finish_reason = end.raw_finish_reason
    chunk.stop_sequence = end.stop_sequence
    chunk.prompt_tokens = end.prompt_tokens
    chunk.completion_tokens = end.completion_tokens
    chunk.usage_reasoning_tokens = end.usage_reasoning_tokens


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
        return orjson.dumps(openai_chat_body(call))

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
        end = ChatChunk(done=True)  # the finish details and usage, filled as they arrive
        calls = ToolCallNormaliser(call.request_id)
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
                extra: ChatChunk | None = None  # reasoning, tool calls, logprobs of this read
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
                                # Anything beyond content (and role): reasoning, tool calls.
                                n = len(delta)
                                if n > 2 or text is None or (n == 2 and "role" not in delta):
                                    extra = extra or ChatChunk()
                                    _delta_extras(delta, extra, calls, name, call.model)
                            if choice.get("logprobs"):
                                extra = extra or ChatChunk()
                                content = choice["logprobs"].get("content")
                                if isinstance(content, list):
                                    extra.logprobs.extend(parse_logprobs(content))
                            reason = choice.get("finish_reason")
                            if reason:
                                _finish(end, str(reason), choice.get("stop_reason"))
                    usage = obj.get("usage")
                    if usage and type(usage) is dict:
                        end.prompt_tokens = usage.get("prompt_tokens")
                        end.completion_tokens = usage.get("completion_tokens")
                        details = usage.get("completion_tokens_details")
                        if type(details) is dict and details.get("reasoning_tokens") is not None:
                            end.usage_reasoning_tokens = int(details["reasoning_tokens"])
                chunk = extra or ChatChunk()
                if parts:
                    chunk.text = "".join(parts)
                    chunk.tokens = len(parts)
                if done:
                    await finish_body(batches)
                    _copy_end(end, chunk)
                    yield chunk
                    return
                if parts or extra is not None:
                    yield chunk
            raise truncated(name, call.model)
        except httpx.HTTPError as exc:
            raise transport_error(exc, name, call.model) from exc
        finally:
            await resp.aclose()

    async def embed(self, call: EmbedCall) -> EmbedOutput:
        # base64 (float32, little-endian, as OpenAI and vLLM encode it): a fifth of the bytes of
        # JSON floats and no float parsing; decoding a 32 x 1024 batch cost the router 1.9 ms of
        # CPU as JSON, 1.1 ms this way. float32 is all the proto's `float` carries anyway.
        body: dict[str, Any] = {
            "model": call.model,
            "input": list(call.inputs),
            "encoding_format": "base64",
        }
        if call.dimensions is not None:
            body["dimensions"] = call.dimensions
        if call.truncate:
            # vLLM refuses a too-long input unless asked to truncate (-1: to the model's
            # maximum); the API's default is Ollama's: truncate.
            body["truncate_prompt_tokens"] = -1
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
