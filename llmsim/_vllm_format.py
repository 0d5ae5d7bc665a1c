"""vLLM (OpenAI-compatible) wire format: SSE chunks, usage, and the nested error body."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from llmsim._agentic import logprob_entry
from llmsim._generate import GenResult
from llmsim._http import json_response
from llmsim._textgen import token_json

__all__ = ["VllmErrors", "VllmFormat", "error_body", "vllm_error"]

_SSE = "text/event-stream; charset=utf-8"
_DONE = b"data: [DONE]\n\n"
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "TimeoutError",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}
MIDSTREAM = "Simulated engine failure during generation (EngineCore encountered an issue)."


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM >= 0.10.1 nested error object."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "Error"),
            "param": param,
            "code": status,
        }
    }


def vllm_error(status: int, message: str, param: str | None = None) -> web.Response:
    return json_response(error_body(status, message, param), status)


class VllmErrors:
    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "midstream":
            return vllm_error(500, MIDSTREAM)
        if kind == "busy":
            return vllm_error(503, "The server is overloaded; please retry later.")
        return vllm_error(status, f"Simulated error (HTTP {status}).")


class VllmFormat(VllmErrors):
    """One chat/completions response; ``chat`` picks the object shapes."""

    content_type = _SSE
    eager_headers = True  # FastAPI's StreamingResponse sends headers before the first token

    def __init__(
        self,
        *,
        request_id: str,
        model: str,
        chat: bool,
        include_usage: bool,
        continuous_usage: bool,
        details: bool,
        n_think: int = 0,
        tool_calls: Sequence[tuple[str, dict[str, Any]]] = (),
        logprobs: int | None = None,
        reasoning_field: str = "reasoning",
    ) -> None:
        self._n_think = n_think  # the first n_think output tokens are reasoning
        self._tool_calls = tool_calls
        self._logprobs = logprobs  # top_logprobs when logprobs were asked for
        self._reasoning_field = reasoning_field
        self._id = request_id
        self._model = model
        self._chat = chat
        self._include_usage = include_usage
        self._continuous = continuous_usage
        self._details = details
        self._created = int(time.time())
        self._object = "chat.completion.chunk" if chat else "text_completion"
        common = (
            b'data: {"id":'
            + orjson.dumps(request_id)
            + b',"object":"'
            + self._object.encode()
            + b'","created":'
            + str(self._created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":[{"index":0,'
        )
        if chat:
            self._pre = common + b'"delta":{"content":'
            self._suf = b'},"logprobs":null,"finish_reason":null}]}\n\n'
        else:
            self._pre = common + b'"text":'
            self._suf = b',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'

    def _chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
        obj: dict[str, Any] = {
            "id": self._id,
            "object": self._object,
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            obj["usage"] = usage
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def usage(self, res: GenResult, n_out: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": res.n_prompt,
            "total_tokens": res.n_prompt + n_out,
            "completion_tokens": n_out,
            "prompt_tokens_details": None,
        }
        if self._details:
            out["prompt_tokens_details"] = {"cached_tokens": res.n_cached}
        if self._n_think:
            out["completion_tokens_details"] = {"reasoning_tokens": min(self._n_think, n_out)}
        return out

    def head(self, res: GenResult) -> bytes:
        if not self._chat:
            return b""
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._chunk([choice], self.usage(res, 0) if self._continuous else None)

    def tokens(self, toks: Sequence[str], start: int, end: int, res: GenResult) -> bytes:
        if self._chat and (start < self._n_think or self._logprobs is not None):
            return b"".join(self._slow(k, toks[k], res) for k in range(start, end))
        if self._continuous:
            return b"".join(
                self._chunk([self._choice(toks[k], None, None)], self.usage(res, k + 1))
                for k in range(start, end)
            )
        pre, suf = self._pre, self._suf
        if end - start == 1:
            return pre + token_json(toks[start]) + suf
        return b"".join([pre + token_json(t) + suf for t in toks[start:end]])

    def _slow(self, k: int, tok: str, res: GenResult) -> bytes:
        """One token as reasoning (``delta.reasoning``) or with its logprobs."""
        choice = self._choice(tok, None, None)
        if k < self._n_think:
            choice["delta"] = {self._reasoning_field: tok}
        elif self._logprobs is not None:
            choice["logprobs"] = {"content": [logprob_entry(tok, self._logprobs)]}
        return self._chunk([choice], self.usage(res, k + 1) if self._continuous else None)

    def _tool_deltas(self) -> bytes:
        """Each call as vLLM streams it: id, type and name first, then the arguments JSON in
        pieces (``delta.tool_calls[index].function.arguments``)."""
        out: list[bytes] = []
        for i, (name, args) in enumerate(self._tool_calls):
            first = {
                "index": i,
                "id": f"chatcmpl-tool-{self._id[-12:]}{i}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.append(self._delta_chunk({"tool_calls": [first]}))
            text = orjson.dumps(args).decode()
            third = max(1, len(text) // 3)
            for piece in (text[:third], text[third : 2 * third], text[2 * third :]):
                if piece:
                    frag = {"index": i, "function": {"arguments": piece}}
                    out.append(self._delta_chunk({"tool_calls": [frag]}))
        return b"".join(out)

    def _delta_chunk(self, delta: dict[str, Any]) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._chunk([choice], None)

    def _choice(self, text: str, finish: str | None, stop: str | None) -> dict[str, Any]:
        if self._chat:
            c: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None}
        else:
            c = {"index": 0, "text": text, "logprobs": None}
        c["finish_reason"] = finish
        if finish is not None or not self._chat:
            c["stop_reason"] = stop
        return c

    def tail(self, res: GenResult) -> bytes:
        usage = self.usage(res, res.n_out)
        out = self._tool_deltas() if self._tool_calls else b""
        out += self._chunk(
            [self._choice("", res.finish_reason, res.stop_reason)],
            usage if self._continuous else None,
        )
        if self._include_usage:
            out += self._chunk([], usage)
        return out + _DONE

    def midstream_error(self) -> bytes:
        return b"data: " + orjson.dumps(error_body(500, MIDSTREAM)) + b"\n\n" + _DONE

    def malformed(self) -> bytes:
        return b'data: {"id":' + orjson.dumps(self._id) + b',"object":\n\n'

    def full_body(self, toks: Sequence[str], res: GenResult) -> web.Response:
        n_think = min(self._n_think, res.n_out)
        text = "".join(toks[n_think : res.n_out])
        if self._chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [
                        {
                            "id": f"chatcmpl-tool-{self._id[-12:]}{i}",
                            "type": "function",
                            "function": {"name": name, "arguments": orjson.dumps(a).decode()},
                        }
                        for i, (name, a) in enumerate(self._tool_calls)
                    ],
                    self._reasoning_field: "".join(toks[:n_think]) if n_think else None,
                },
                "logprobs": None,
                "finish_reason": res.finish_reason,
                "stop_reason": res.stop_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": res.finish_reason,
                "stop_reason": res.stop_reason,
                "prompt_logprobs": None,
            }
        body: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion" if self._chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": self.usage(res, res.n_out),
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        return json_response(body)
