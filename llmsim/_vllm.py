"""The vLLM OpenAI-compatible server (``/v1/*``, ``/health``, ``/version``, ``/metrics``)."""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llmsim._agentic import AgenticPlan, compose
from llmsim._engine import ModelEngine
from llmsim._faults import FaultHeaderError, FaultPlan
from llmsim._generate import GenResult, Job, run_job, run_prefill
from llmsim._http import BodyError, json_response, read_json
from llmsim._metrics import render_prometheus
from llmsim._state import SimContext
from llmsim._textgen import (
    completion_seed,
    plan_output,
    render_chat,
    tokenize,
    truncate_dims,
)
from llmsim._vllm_agentic import vllm_plan
from llmsim._vllm_format import VllmErrors, VllmFormat, vllm_error

__all__ = ["VllmApi"]


class _Invalid(Exception):
    """A 400 with this message."""


def _int_field(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        v = body.get(name)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _Invalid(f"{name} must be at least 1, got {v}.")
        return v
    return None


def _float_field(body: Mapping[str, Any], name: str) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise _Invalid(f"{name} must be a number.")
    return float(v)


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise _Invalid("stop must be a string or a list of strings.")


def _single_prompt(value: Any) -> str | list[int]:
    """Completions prompt: a string, token ids, or a batch of one of those."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
        value = value[0]
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        return [int(t) for t in value]
    raise _Invalid("prompt must be a non-empty string or token list (batches of one only).")


class VllmApi:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._errors = VllmErrors()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/health", self.health),
            web.get("/ping", self.health),
            web.post("/ping", self.health),
            web.get("/version", self.version),
            web.get("/metrics", self.metrics),
            web.get("/v1/models", self.models),
            web.post("/v1/chat/completions", self.chat),
            web.post("/v1/completions", self.completions),
            web.post("/v1/embeddings", self.embeddings),
        ]

    # -- metadata --------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self.ctx.faults.health_failing else 200)

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": self.ctx.config.version()})

    async def metrics(self, request: web.Request) -> web.Response:
        rows = [(name, e.metrics, e.gauges()) for name, e in self.ctx.engines.items()]
        return web.Response(
            text=render_prometheus(rows), content_type="text/plain", charset="utf-8"
        )

    async def models(self, request: web.Request) -> web.Response:
        created = int(self.ctx.started_wall)
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": name,
                "parent": None,
                "max_model_len": eng.spec.context_length,
                "permission": [
                    {
                        "id": f"modelperm-{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}",
                        "object": "model_permission",
                        "created": created,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
            for name, eng in self.ctx.engines.items()
        ]
        return json_response({"object": "list", "data": data})

    # -- shared request preamble -----------------------------------------------------------
    async def _begin(
        self, request: web.Request, kind: str
    ) -> tuple[dict[str, Any], dict[str, Any], ModelEngine, FaultPlan] | web.Response:
        try:
            body = await read_json(request)
        except BodyError as exc:
            return vllm_error(400, exc.message)
        if not isinstance(body, dict):
            return vllm_error(400, "Request body must be a JSON object.")
        ctx = self.ctx
        log = ctx.log.record(request.method, request.path, request.headers, body)
        ctx.stats.requests_total += 1
        model = body.get("model")
        if model is None:  # vLLM serves its (first) model when none is named
            model = next((n for n, e in ctx.engines.items() if e.spec.kind == kind), None)
            if model is None:
                return _logged(log, vllm_error(400, "model is required", "model"))
            body["model"] = model
        eng = ctx.engines.get(model) if isinstance(model, str) else None
        if eng is None:
            return _logged(log, vllm_error(404, f"The model `{model}` does not exist.", "model"))
        if eng.spec.kind != kind:
            api = "Embeddings API" if kind == "embedding" else "Completions API"
            return _logged(log, vllm_error(400, f"The model does not support {api}"))
        try:
            plan = ctx.plan(request)
        except FaultHeaderError as exc:
            return _logged(log, vllm_error(400, str(exc)))
        return body, log, eng, plan

    def _request_id(self, request: web.Request, body: Mapping[str, Any]) -> str:
        rid = request.headers.get("X-Request-Id") or body.get("request_id")
        return rid if isinstance(rid, str) and rid else uuid.uuid4().hex

    # -- generation ------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        begun = await self._begin(request, "generate")
        if isinstance(begun, web.Response):
            return begun
        body, log, eng, plan = begun
        try:
            job, fmt = self._job(request, body, log, eng, plan, chat=chat)
        except _Invalid as exc:
            return _logged(log, vllm_error(400, str(exc)))
        return await run_job(request, self.ctx.stats, job, fmt)

    def _job(
        self,
        request: web.Request,
        body: dict[str, Any],
        log: dict[str, Any],
        eng: ModelEngine,
        plan: FaultPlan,
        *,
        chat: bool,
    ) -> tuple[Job, VllmFormat]:
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _Invalid("messages must be a non-empty list.")
            if not all(isinstance(m, Mapping) for m in messages):
                raise _Invalid("each message must be an object.")
            prompt = render_chat(messages)
            prompt_tokens = tokenize(prompt)
        else:
            single = _single_prompt(body.get("prompt"))
            if isinstance(single, str):
                prompt, prompt_tokens = single, tokenize(single)
            else:
                prompt_tokens = [str(t) for t in single]
                prompt = " ".join(prompt_tokens)
        n = body.get("n")
        if n not in (None, 1):
            raise _Invalid("The simulator supports n=1 only.")
        stream = body.get("stream") is True
        stream_options = body.get("stream_options")
        if stream_options is not None and not stream:
            raise _Invalid("Stream options can only be defined when `stream=True`.")
        so = stream_options if isinstance(stream_options, Mapping) else {}
        if chat:
            max_tokens = _int_field(body, "max_completion_tokens", "max_tokens")
        else:  # the legacy completions API defaults to 16 tokens, and vLLM keeps that
            max_tokens = _int_field(body, "max_tokens") or 16
        ctx_len = eng.spec.context_length
        n_prompt = len(prompt_tokens)
        if max_tokens is not None and n_prompt + max_tokens > ctx_len:
            raise _Invalid(
                f"This model's maximum context length is {ctx_len} tokens. However, you "
                f"requested {n_prompt + max_tokens} tokens ({n_prompt} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages "
                "or completion."
            )
        if max_tokens is None:
            if n_prompt >= ctx_len:
                raise _Invalid(
                    f"This model's maximum context length is {ctx_len} tokens. However, your "
                    f"request has {n_prompt} input tokens. Please reduce the length of the "
                    "input messages."
                )
            max_tokens = ctx_len - n_prompt
        min_tokens = body.get("min_tokens")
        timing = self.ctx.timing
        agentic = vllm_plan(body, eng.spec) if chat else AgenticPlan()
        if isinstance(agentic, str):
            raise _Invalid(agentic)
        seed = self.ctx.seed(body.get("seed"))
        tokens, finish, stop_reason = plan_output(
            model=eng.spec.name,
            seed=seed,
            prompt=prompt,
            base_len=timing.completion_tokens,
            jitter=timing.jitter,
            max_tokens=max_tokens,
            min_tokens=min_tokens if isinstance(min_tokens, int) else 0,
            ignore_eos=body.get("ignore_eos") is True,
            stop=_stops(body.get("stop")),
            temperature=_float_field(body, "temperature"),
            top_p=_float_field(body, "top_p"),
            concept_answers=self.ctx.config.answer_mode == "concepts",
            unrelated=self.ctx.faults.unrelated_answers,
        )
        out = compose(
            agentic,
            tokens,
            finish,
            stop_reason,
            model=eng.spec.name,
            prompt=prompt,
            seed_int=completion_seed(eng.spec.name, seed, prompt),
            max_tokens=max_tokens,
            last_role=_last_role(body.get("messages")) if chat else "user",
        )
        tokens, finish, stop_reason = out.tokens, out.finish, out.stop_reason
        if out.tool_calls:
            finish = "tool_calls"
        prefix = "chatcmpl-" if chat else "cmpl-"
        fmt = VllmFormat(
            request_id=prefix + self._request_id(request, body),
            model=eng.spec.name,
            chat=chat,
            include_usage=stream and so.get("include_usage") is True,
            continuous_usage=stream and so.get("continuous_usage_stats") is True,
            details=self.ctx.config.prompt_tokens_details,
            n_think=out.n_think,
            tool_calls=out.tool_calls,
            logprobs=agentic.top_logprobs if agentic.logprobs else None,
            reasoning_field=self.ctx.config.vllm_reasoning_field,
        )
        job = Job(
            engine=eng,
            prompt_tokens=prompt_tokens,
            tokens=tokens,
            finish_reason=finish,
            stop_reason=stop_reason,
            plan=plan,
            stream=stream,
            log=log,
        )
        return job, fmt

    # -- embeddings ------------------------------------------------------------------------
    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request, "embedding")
        if isinstance(begun, web.Response):
            return begun
        body, log, eng, plan = begun
        inputs = _embedding_inputs(body.get("input"))
        if inputs is None:
            return _logged(
                log, vllm_error(400, "input must be a string, a list of strings or token ids.")
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return _logged(log, vllm_error(400, "encoding_format must be 'float' or 'base64'."))
        ctx_len = eng.spec.context_length
        token_lists = [tokenize(t) if isinstance(t, str) else t for t in inputs]
        truncate = body.get("truncate_prompt_tokens")
        if isinstance(truncate, int) and not isinstance(truncate, bool) and truncate != 0:
            keep = ctx_len if truncate < 0 else min(truncate, ctx_len)
            token_lists = [t[-keep:] for t in token_lists]  # vLLM keeps the tail
        too_long = max(len(t) for t in token_lists)
        if too_long > ctx_len:
            return _logged(
                log,
                vllm_error(
                    400,
                    f"This model's maximum context length is {ctx_len} tokens. However, you "
                    f"requested {too_long} tokens in the input for embedding generation. Please "
                    "reduce the length of the input.",
                ),
            )
        n_tokens = sum(len(t) for t in token_lists)
        done = await run_prefill(request, self.ctx.stats, eng, n_tokens, plan, log, self._errors)
        if not isinstance(done, GenResult):
            return done
        dims = body.get("dimensions")
        data = []
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            vec = self.ctx.config.embed(eng.spec.name, text, eng.spec.embedding_dim)
            if isinstance(dims, int) and not isinstance(dims, bool):
                vec = truncate_dims(vec, dims)
            value: list[float] | str = vec
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"index": i, "object": "embedding", "embedding": value})
        return json_response(
            {
                "id": "embd-" + self._request_id(request, body),
                "object": "list",
                "created": int(done.wall_arrival),
                "model": eng.spec.name,
                "data": data,
                "usage": {
                    "prompt_tokens": n_tokens,
                    "total_tokens": n_tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }
        )


def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [list(value)]
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return [list(v) for v in value]
    return None


def _logged(log: dict[str, Any], resp: web.Response) -> web.Response:
    log["status"] = resp.status
    return resp


def _last_role(messages: Any) -> str:
    """The role of the last message (a model answers a tool result instead of calling again)."""
    if isinstance(messages, list) and messages and isinstance(messages[-1], Mapping):
        return str(messages[-1].get("role", "user"))
    return "user"
