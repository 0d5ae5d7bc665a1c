"""Ollama wire format: NDJSON chunks, the final metrics line and ``{"error": ...}`` bodies."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from llmsim._agentic import logprob_entry
from llmsim._generate import GenResult
from llmsim._http import json_response, now_rfc3339
from llmsim._textgen import token_json

__all__ = ["BUSY", "MIDSTREAM", "OllamaErrors", "OllamaFormat", "ollama_error"]

BUSY = "server busy, please try again.  maximum pending requests exceeded"  # two spaces, sic
MIDSTREAM = "an error was encountered while running the model"
_NDJSON = "application/x-ndjson"
_VOCAB_SIZE = 151_936


def ollama_error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def _injected_message(status: int) -> str:
    if status == 503:
        return BUSY
    if status == 500:
        return MIDSTREAM
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "simulated error"


def _token_ids(tokens: Sequence[str]) -> list[int]:
    return [zlib.crc32(t.encode()) % _VOCAB_SIZE for t in tokens]


class OllamaErrors:
    """Pre-stream errors in Ollama's format (used alone by the embedding endpoints)."""

    def error_response(self, status: int, kind: str) -> web.Response:
        if kind == "busy":
            return ollama_error(503, BUSY)
        if kind == "midstream":
            return ollama_error(500, MIDSTREAM)
        return ollama_error(status, _injected_message(status))


class OllamaFormat(OllamaErrors):
    """One /api/generate or /api/chat response. Tokens become ``{"...","done":false}`` lines."""

    content_type = _NDJSON
    eager_headers = False  # Go writes the status with the first line, so early errors get one

    def __init__(
        self,
        model: str,
        *,
        chat: bool,
        prompt_tokens: Sequence[str],
        output: Sequence[str],
        raw: bool,
        itl_s: float,
        n_think: int = 0,
        tool_calls: Sequence[tuple[str, dict[str, Any]]] = (),
        logprobs: int | None = None,
    ) -> None:
        self._n_think = n_think  # the first n_think output tokens are thinking
        self._tool_calls = tool_calls
        self._logprobs = logprobs  # top_logprobs when logprobs were asked for
        self._model = model
        self._chat = chat
        self._prompt_tokens = prompt_tokens
        self._output = output
        self._raw = raw
        self._itl_s = itl_s
        self._pre = b'{"model":' + orjson.dumps(model) + b',"created_at":"'
        if chat:
            self._mid = b'","message":{"role":"assistant","content":'
            self._suf = b'},"done":false}\n'
        else:
            self._mid = b'","response":'
            self._suf = b',"done":false}\n'

    def head(self, res: GenResult) -> bytes:
        return b""

    def tokens(self, toks: Sequence[str], start: int, end: int, res: GenResult) -> bytes:
        if start < self._n_think or self._logprobs is not None:
            return b"".join(self._line(k, toks[k]) for k in range(start, end))
        pre = self._pre + now_rfc3339().encode() + self._mid
        suf = self._suf
        if end - start == 1:
            return pre + token_json(toks[start]) + suf
        return b"".join([pre + token_json(t) + suf for t in toks[start:end]])

    def _line(self, k: int, tok: str) -> bytes:
        """One token on the slow path: thinking (``message.thinking``) or with logprobs."""
        out: dict[str, Any] = {"model": self._model, "created_at": now_rfc3339()}
        if k < self._n_think:
            out["message"] = {"role": "assistant", "content": "", "thinking": tok}
        elif self._chat:
            out["message"] = {"role": "assistant", "content": tok}
        else:
            out["response"] = tok
        out["done"] = False
        if self._logprobs is not None and k >= self._n_think:
            out["logprobs"] = [logprob_entry(tok, self._logprobs)]
        return orjson.dumps(out) + b"\n"

    def _calls(self) -> list[dict[str, Any]]:
        """Whole calls, as Ollama streams them: id, function.index, arguments as an object."""
        return [
            {
                "id": f"call_{zlib.crc32(f'{self._model}{i}{name}'.encode()):08x}",
                "function": {"index": i, "name": name, "arguments": args},
            }
            for i, (name, args) in enumerate(self._tool_calls)
        ]

    def _final(self, res: GenResult, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self._model, "created_at": now_rfc3339()}
        if self._chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = True
        out["done_reason"] = res.finish_reason
        if not self._chat and not self._raw:
            out["context"] = _token_ids([*self._prompt_tokens, *self._output[: res.n_out]])
        end = res.t_last if res.t_last else res.t_first
        metrics = {
            "total_duration": time.time() - res.wall_arrival,
            "load_duration": res.load_s,
            "prompt_eval_count": res.n_prompt,
            "prompt_eval_duration": max(0.0, res.t_first - res.t_admitted - res.load_s),
            "eval_count": res.n_out,
            # n tokens take n steps; the measured span covers n - 1 of them.
            "eval_duration": (end - res.t_first) + self._itl_s if res.n_out else 0.0,
        }
        for key, value in metrics.items():
            v = value if key.endswith("_count") else int(value * 1e9)
            if v:  # Go's omitempty: zero values are left out
                out[key] = v
        return out

    def tail(self, res: GenResult) -> bytes:
        final = orjson.dumps(self._final(res, "")) + b"\n"
        if not self._tool_calls:
            return final
        line = {
            "model": self._model,
            "created_at": now_rfc3339(),
            "message": {"role": "assistant", "content": "", "tool_calls": self._calls()},
            "done": False,
        }
        return orjson.dumps(line) + b"\n" + final

    def midstream_error(self) -> bytes:
        return orjson.dumps({"error": MIDSTREAM}) + b"\n"

    def malformed(self) -> bytes:
        return b'{"model":' + orjson.dumps(self._model) + b',"created_at":"2024-\n'

    def full_body(self, toks: Sequence[str], res: GenResult) -> web.Response:
        n_think = min(self._n_think, res.n_out)
        body = self._final(res, "".join(toks[n_think : res.n_out]))
        if self._chat and n_think:
            body["message"]["thinking"] = "".join(toks[:n_think])
        if self._chat and self._tool_calls:
            body["message"]["tool_calls"] = self._calls()
        return json_response(body)
