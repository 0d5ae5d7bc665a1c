"""One streamed chat request, timed, against each kind of target.

- :class:`RouterTarget`: the router over gRPC (raw generated stubs, no per-chunk dataclasses),
  with the provider pinned.
- :class:`OllamaTarget`: Ollama's ``/api/chat`` (NDJSON) over aiohttp.
- :class:`OpenAITarget`: an OpenAI-compatible ``/v1/chat/completions`` (SSE) over aiohttp: vLLM,
  or any proxy in front of it (the router-overhead benchmark points it at LiteLLM).

This is the load path: per network read it splits bytes and parses JSON with orjson, and per
gRPC message it reads one oneof field. Nothing is built per token but a float timestamp, and
only when arrival times are asked for.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import grpc
import orjson

from clients.gen.llmgateway.v1 import common_pb2, router_pb2, router_pb2_grpc
from clients.llm import map_rpc_error
from llmtools.llmbench._prompts import Prompt

_TASKS: dict[str, common_pb2.Task.ValueType] = {
    "classification": common_pb2.TASK_CLASSIFICATION,
    "analysis": common_pb2.TASK_ANALYSIS,
    "synthesis": common_pb2.TASK_SYNTHESIS,
    "reflection": common_pb2.TASK_REFLECTION,
    "retrieval_evaluation": common_pb2.TASK_RETRIEVAL_EVALUATION,
    "verification": common_pb2.TASK_VERIFICATION,
}
_PROVIDERS: dict[str, common_pb2.Provider.ValueType] = {
    "ollama": common_pb2.PROVIDER_OLLAMA,
    "vllm": common_pb2.PROVIDER_VLLM,
}
_ROLES = {"system": router_pb2.ROLE_SYSTEM, "user": router_pb2.ROLE_USER}
_JSON = {"content-type": "application/json"}
# memOS's model names are Ollama's; vLLM serves Hugging Face ids (router_service/catalog.py
# holds the router's full table; the tool keeps its own so it needs no server code).
VLLM_MODEL_NAMES = {
    "qwen3:8b": "Qwen/Qwen3-8B",
    "gemma3:4b": "google/gemma-3-4b-it",
    "deepseek-r1:14b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "llama3.2:3b": "meta-llama/Llama-3.2-3B-Instruct",
    "qwen3:30b-a3b": "Qwen/Qwen3-30B-A3B",
    "llama3.3:70b": "meta-llama/Llama-3.3-70B-Instruct",
}


@dataclass(slots=True)
class Sample:
    """One request. Times are ``time.perf_counter()`` values; ``error`` is "" on success.

    ``arrivals`` (when recorded) holds the arrival time of every read or message that carried
    text, so gaps between them are what a client of that path sees.
    """

    t_start: float
    t_first: float | None
    t_end: float
    completion_tokens: int
    prompt_tokens: int
    error: str
    arrivals: list[float] | None = None
    # Through the router: its own time to first token (request receipt to first delta handed
    # to gRPC, GenerateEnd.timings), which tells the router's share from the transport's.
    router_ttft_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def ttft_s(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_start

    def gaps(self) -> list[float]:
        a = self.arrivals or []
        return [b - x for x, b in itertools.pairwise(a)]

    def tokens_per_s(self) -> float | None:
        """Generation rate after the first token (the seed report's "tokens/sec")."""
        if self.t_first is None or self.completion_tokens < 2 or self.t_end <= self.t_first:
            return None
        return (self.completion_tokens - 1) / (self.t_end - self.t_first)


class Target(Protocol):
    """Something that runs one streamed chat request and times it."""

    @property
    def label(self) -> str: ...

    async def run(self, prompt: Prompt, seq: int) -> Sample: ...

    async def aclose(self) -> None: ...


class RouterTarget:
    """The router's ``Generate`` with the provider pinned and the model set."""

    def __init__(
        self,
        address: str,
        provider: str,
        model: str,
        *,
        timeout_s: float,
        record_arrivals: bool = False,
        channels: int = 1,
    ) -> None:
        self.provider = provider
        self._model = model
        self._timeout = timeout_s
        self._record = record_arrivals
        # Distinct channel args keep the channels on separate connections.
        self._channels = [
            grpc.aio.insecure_channel(
                address,
                options=[("grpc.max_receive_message_length", 64 << 20), ("llmbench.channel", i)],
            )
            for i in range(max(1, channels))
        ]
        self._stubs = [router_pb2_grpc.RouterServiceStub(ch) for ch in self._channels]
        self._requests: dict[str, router_pb2.GenerateRequest] = {}

    @property
    def label(self) -> str:
        return f"router→{self.provider}"

    def _request(self, prompt: Prompt) -> router_pb2.GenerateRequest:
        req = self._requests.get(prompt.id)
        if req is None:
            req = router_pb2.GenerateRequest(
                task=_TASKS.get(prompt.task, common_pb2.TASK_ANALYSIS),
                model=self._model,
                provider=_PROVIDERS[self.provider],
                messages=[
                    router_pb2.Message(role=_ROLES[m["role"]], content=m["content"])
                    for m in prompt.messages()
                ],
            )
            if prompt.max_tokens is not None:
                req.options.max_tokens = prompt.max_tokens
            self._requests[prompt.id] = req
        return req

    async def run(self, prompt: Prompt, seq: int) -> Sample:
        req = self._request(prompt)
        stub = self._stubs[seq % len(self._stubs)]
        arrivals: list[float] | None = [] if self._record else None
        first: float | None = None
        deltas = completion = prompt_tokens = 0
        router_ttft: float | None = None
        t0 = time.perf_counter()
        call = stub.Generate(req, timeout=self._timeout)
        try:
            async for msg in call:
                kind = msg.WhichOneof("event")
                if kind == "delta":
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    if arrivals is not None:
                        arrivals.append(now)
                    deltas += 1
                elif kind == "end":
                    end = msg.end
                    completion = end.usage.completion_tokens or deltas
                    prompt_tokens = end.usage.prompt_tokens
                    router_ttft = end.timings.time_to_first_token_ms / 1000
        except grpc.aio.AioRpcError as exc:
            err = map_rpc_error(exc)
            code = err.code.name if err.code is not None else f"GRPC_{err.status_code.name}"
            return Sample(t0, first, time.perf_counter(), deltas, 0, code, arrivals)
        return Sample(
            t0, first, time.perf_counter(), completion, prompt_tokens, "", arrivals, router_ttft
        )

    async def aclose(self) -> None:
        for ch in self._channels:
            await ch.close()


class _HttpTarget:
    """Shared by the two HTTP flavours: session, timeouts, byte splitting, error naming."""

    path = ""
    flavour = ""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout_s: float,
        record_arrivals: bool = False,
        headers: dict[str, str] | None = None,
        label: str | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + self.path
        self._model = model
        self._record = record_arrivals
        self._headers = {**_JSON, **(headers or {})}
        self._label = label or self.flavour
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._bodies: dict[str, bytes] = {}

    @property
    def label(self) -> str:
        return self._label

    def _body(self, prompt: Prompt) -> bytes:
        raise NotImplementedError

    def _parse(self, line: bytes, state: _StreamState) -> None:
        raise NotImplementedError

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                auto_decompress=False,
            )
        return self._session

    async def run(self, prompt: Prompt, seq: int) -> Sample:
        body = self._bodies.get(prompt.id)
        if body is None:
            body = self._bodies[prompt.id] = self._body(prompt)
        st = _StreamState([] if self._record else None)
        t0 = time.perf_counter()
        try:
            async with self._session_now().post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                if resp.status != 200:
                    await resp.read()
                    return st.sample(t0, f"HTTP_{resp.status}")
                pending = b""
                async for data in resp.content.iter_any():
                    if pending:
                        data = pending + data
                    parts = data.split(b"\n")
                    pending = parts.pop()
                    before = st.tokens
                    for line in parts:
                        if line and not line.isspace():
                            self._parse(line, st)
                    if st.tokens != before:
                        st.arrived(time.perf_counter())
                    if st.error or st.done:
                        break
        except TimeoutError:
            return st.sample(t0, "TIMEOUT")
        except aiohttp.ClientConnectorError:
            return st.sample(t0, "CONNECT_FAILED")
        except aiohttp.ClientError:
            return st.sample(t0, "CONNECTION_BROKEN")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return st.sample(t0, "MALFORMED_STREAM")
        if st.error:
            return st.sample(t0, st.error)
        if not st.done:
            return st.sample(t0, "TRUNCATED_STREAM")
        return st.sample(t0, "")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(slots=True)
class _StreamState:
    arrivals: list[float] | None
    first: float | None = None
    tokens: int = 0
    completion: int | None = None
    prompt_tokens: int = 0
    done: bool = False
    error: str = ""

    def arrived(self, now: float) -> None:
        if self.first is None:
            self.first = now
        if self.arrivals is not None:
            self.arrivals.append(now)

    def sample(self, t0: float, error: str) -> Sample:
        completion = self.completion if self.completion is not None else self.tokens
        return Sample(
            t0,
            self.first,
            time.perf_counter(),
            completion,
            self.prompt_tokens,
            error,
            self.arrivals,
        )


class OllamaTarget(_HttpTarget):
    path = "/api/chat"
    flavour = "ollama"

    def _body(self, prompt: Prompt) -> bytes:
        body: dict[str, Any] = {"model": self._model, "messages": prompt.messages(), "stream": True}
        if prompt.max_tokens is not None:
            body["options"] = {"num_predict": prompt.max_tokens}
        return orjson.dumps(body)

    def _parse(self, line: bytes, st: _StreamState) -> None:
        obj = orjson.loads(line)
        if "error" in obj:
            st.error = "ENGINE_STREAM_ERROR"
            return
        msg = obj.get("message")
        if msg and msg.get("content"):
            st.tokens += 1
        if obj.get("done"):
            st.done = True
            st.completion = obj.get("eval_count", st.tokens)
            st.prompt_tokens = obj.get("prompt_eval_count", 0)


class OpenAITarget(_HttpTarget):
    path = "/v1/chat/completions"
    flavour = "vllm"

    def _body(self, prompt: Prompt) -> bytes:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": prompt.messages(),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if prompt.max_tokens is not None:
            body["max_tokens"] = prompt.max_tokens
        return orjson.dumps(body)

    def _parse(self, line: bytes, st: _StreamState) -> None:
        if not line.startswith(b"data:"):
            return  # SSE comments and other fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            st.done = True
            return
        obj = orjson.loads(payload)
        if "error" in obj:
            st.error = "ENGINE_STREAM_ERROR"
            return
        for choice in obj.get("choices") or ():
            delta = choice.get("delta")
            if delta and delta.get("content"):
                st.tokens += 1
        usage = obj.get("usage")
        if usage:
            st.completion = usage.get("completion_tokens", st.tokens)
            st.prompt_tokens = usage.get("prompt_tokens", 0)
