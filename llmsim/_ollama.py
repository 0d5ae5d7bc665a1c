"""The Ollama HTTP API (``/api/*`` and ``GET /``) on top of the shared engine."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from llmsim._agentic import AgenticPlan, compose
from llmsim._engine import ModelEngine
from llmsim._faults import FaultHeaderError, FaultPlan
from llmsim._generate import GenResult, Job, run_job, run_prefill
from llmsim._http import BodyError, json_response, now_rfc3339, read_json, rfc3339
from llmsim._ollama_agentic import ollama_plan, truncate_prompt
from llmsim._ollama_format import OllamaErrors, OllamaFormat, ollama_error
from llmsim._state import SimContext
from llmsim._textgen import (
    completion_seed,
    count_tokens,
    plan_output,
    render_chat,
    tokenize,
    truncate_dims,
)

__all__ = ["OllamaApi", "canonical_name"]

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def canonical_name(name: str) -> str:
    """``mxbai-embed-large`` and ``mxbai-embed-large:latest`` are the same model."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def parse_keep_alive(value: Any) -> float | None:
    """Seconds; a number is seconds, a string is a Go duration ("5m", "1h30m", "-1s")."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("invalid keep_alive")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        parts = _DURATION_RE.findall(body)
        if not parts or "".join(n + u for n, u in parts) != body:
            raise ValueError(f'time: invalid duration "{value}"')
        return sign * sum(float(n) * _UNIT_S[u] for n, u in parts)
    raise ValueError("invalid keep_alive")


def _details(eng: ModelEngine) -> dict[str, Any]:
    s = eng.spec
    return {
        "parent_model": "",
        "format": "gguf",
        "family": s.family,
        "families": [s.family],
        "parameter_size": s.parameter_size,
        "quantization_level": s.quantization,
    }


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class OllamaApi:
    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._errors = OllamaErrors()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),  # also answers HEAD
            web.get("/api/version", self.version),
            web.get("/api/tags", self.tags),
            web.get("/api/ps", self.ps),
            web.post("/api/show", self.show),
            web.post("/api/generate", self.generate),
            web.post("/api/chat", self.chat),
            web.post("/api/embed", self.embed),
            web.post("/api/embeddings", self.embeddings),
        ]

    def _engine(self, name: str) -> ModelEngine | None:
        return self.ctx.engines.get(canonical_name(name))

    # -- metadata --------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        if self.ctx.faults.health_failing:
            return web.Response(status=503, text="Ollama is not running")
        return web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": self.ctx.config.version()})

    async def tags(self, request: web.Request) -> web.Response:
        modified = rfc3339(self.ctx.started_wall)
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": eng.spec.size_bytes,
                "digest": _digest(name),
                "details": _details(eng),
            }
            for name, eng in self.ctx.engines.items()
        ]
        return json_response({"models": models})

    async def ps(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        wall = time.time()
        models = []
        for name, eng in self.ctx.engines.items():
            until = eng.loaded_until
            if until is None or until < now:
                continue
            expires = wall + (until - now) if math.isfinite(until) else wall + 9e9
            models.append(
                {
                    "name": name,
                    "model": name,
                    "size": eng.spec.size_bytes,
                    "digest": _digest(name),
                    "details": _details(eng),
                    "expires_at": rfc3339(expires),
                    "size_vram": eng.spec.size_bytes,
                    "context_length": min(eng.spec.context_length, 4096),
                }
            )
        return json_response({"models": models})

    async def show(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except BodyError as exc:
            return ollama_error(400, exc.message)
        if not isinstance(body, dict):
            return ollama_error(400, "invalid request body")
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            return ollama_error(400, "model is required")
        eng = self._engine(name)
        if eng is None:
            return ollama_error(404, f"model '{name}' not found")
        s = eng.spec
        arch = s.family.replace("-", "_")
        return json_response(
            {
                "license": "",
                "modelfile": (
                    f'# Modelfile generated by "ollama show"\nFROM {canonical_name(name)}\n'
                ),
                "parameters": "temperature 0.6\ntop_p 0.95",
                "template": "{{ .Prompt }}",
                "details": _details(eng),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": s.parameter_count,
                    f"{arch}.context_length": s.context_length,
                    f"{arch}.embedding_length": s.embedding_dim,
                },
                "capabilities": list(s.capabilities),
                "modified_at": rfc3339(self.ctx.started_wall),
            }
        )

    # -- inference -------------------------------------------------------------------------
    async def _begin(
        self, request: web.Request
    ) -> tuple[dict[str, Any], dict[str, Any], ModelEngine, FaultPlan] | web.Response:
        """Parse, log and validate the common parts; an error response on failure."""
        try:
            body = await read_json(request)
        except BodyError as exc:
            return ollama_error(400, exc.message)
        if not isinstance(body, dict):
            return ollama_error(400, "invalid request body")
        ctx = self.ctx
        log = ctx.log.record(request.method, request.path, request.headers, body)
        ctx.stats.requests_total += 1
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _logged(log, ollama_error(400, "model is required"))
        eng = self._engine(model)
        if eng is None:
            return _logged(log, ollama_error(404, f"model '{model}' not found"))
        if body.get("options") is not None and not isinstance(body.get("options"), Mapping):
            return _logged(log, ollama_error(400, "options must be an object"))
        try:
            plan = ctx.plan(request)
            parse_keep_alive(body.get("keep_alive"))
        except (FaultHeaderError, ValueError) as exc:
            return _logged(log, ollama_error(400, str(exc)))
        return body, log, eng, plan

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def _complete(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, log, eng, plan = begun
        model: str = body["model"]
        if eng.spec.kind == "embedding":
            what = "chat" if chat else "generate"
            return _logged(log, ollama_error(400, f'"{model}" does not support {what}'))
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        raw = bool(body.get("raw")) and not chat
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
                return _logged(log, ollama_error(400, "messages must be a list of objects"))
            prompt = render_chat(messages) if messages else ""
        else:
            text = body.get("prompt") or ""
            if not isinstance(text, str):
                return _logged(log, ollama_error(400, "prompt must be a string"))
            system = body.get("system") or ""
            turns = [{"role": "system", "content": system}] if system else []
            prompt = (
                text
                if raw or not text
                else render_chat([*turns, {"role": "user", "content": text}])
            )
        if not prompt:
            return await self._load_only(log, eng, model, chat=chat, keep_alive=keep_alive)
        opts: Mapping[str, Any] = body.get("options") or {}
        agentic = ollama_plan(body, eng.spec) if chat else AgenticPlan()
        if isinstance(agentic, str):
            return _logged(log, ollama_error(400, agentic))
        prompt_tokens = truncate_prompt(tokenize(prompt), opts.get("num_ctx"), log)
        if len(prompt_tokens) < count_tokens(prompt):  # the model sees only the tail
            prompt = " ".join(prompt_tokens)
        num_predict = opts.get("num_predict")
        max_tokens = num_predict if isinstance(num_predict, int) and num_predict > 0 else None
        stop = opts.get("stop") or ()
        seed = self.ctx.seed(opts.get("seed"))
        tokens, finish, _ = plan_output(
            model=canonical_name(model),
            seed=seed,
            prompt=prompt,
            base_len=self.ctx.timing.completion_tokens,
            jitter=self.ctx.timing.jitter,
            max_tokens=max_tokens,
            stop=[stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)],
            temperature=_num(opts.get("temperature")),
            top_p=_num(opts.get("top_p")),
            concept_answers=self.ctx.config.answer_mode == "concepts",
            unrelated=self.ctx.faults.unrelated_answers,
        )
        messages = body.get("messages") or [{}]
        out = compose(
            agentic,
            tokens,
            finish,
            None,
            model=canonical_name(model),
            prompt=prompt,
            seed_int=completion_seed(canonical_name(model), seed, prompt),
            max_tokens=max_tokens,
            last_role=str(messages[-1].get("role", "user")) if chat else "user",
        )
        tokens, finish = out.tokens, out.finish
        fmt = OllamaFormat(
            model,
            chat=chat,
            prompt_tokens=prompt_tokens,
            output=tokens,
            raw=raw,
            itl_s=eng.itl_s,
            n_think=out.n_think,
            tool_calls=out.tool_calls,
            logprobs=agentic.top_logprobs if agentic.logprobs else None,
        )
        job = Job(
            engine=eng,
            prompt_tokens=prompt_tokens,
            tokens=tokens,
            finish_reason=finish,
            stop_reason=None,
            plan=plan,
            stream=body.get("stream") is not False,
            log=log,
            manage_residency=True,
            keep_alive_s=keep_alive,
        )
        return await run_job(request, self.ctx.stats, job, fmt)

    async def _load_only(
        self,
        log: dict[str, Any],
        eng: ModelEngine,
        model: str,
        *,
        chat: bool,
        keep_alive: float | None,
    ) -> web.Response:
        """Empty prompt/messages: load the model (or unload it with keep_alive 0)."""
        loop = asyncio.get_running_loop()
        reason = "unload" if keep_alive == 0 else "load"
        if reason == "load":
            await asyncio.sleep(eng.ensure_loaded(loop.time()))
        eng.keep_alive(loop.time(), keep_alive)
        out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
        if chat:
            out["message"] = {"role": "assistant", "content": ""}
        else:
            out["response"] = ""
        out.update(done=True, done_reason=reason)
        return _logged(log, json_response(out))

    async def embed(self, request: web.Request) -> web.StreamResponse:
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, log, eng, plan = begun
        model: str = body["model"]
        inp = body.get("input")
        if inp is None:
            texts: list[str] = []
        elif isinstance(inp, str):
            texts = [inp] if inp else []
        elif isinstance(inp, list) and all(isinstance(t, str) for t in inp):
            texts = list(inp)
        else:
            return _logged(log, ollama_error(400, "invalid input type"))
        if not texts:
            return _logged(log, json_response({"model": model, "embeddings": []}))
        counts = [count_tokens(t) for t in texts]
        ctx_len = eng.spec.context_length
        if body.get("truncate") is False and max(counts) > ctx_len:
            return _logged(log, ollama_error(400, "input exceeds maximum context length"))
        n_tokens = sum(min(c, ctx_len) for c in counts)
        done = await self._prefill(request, log, eng, plan, n_tokens, body.get("keep_alive"))
        if not isinstance(done, GenResult):
            return done
        dims = body.get("dimensions")
        name, dim = canonical_name(model), eng.spec.embedding_dim
        vectors = [self.ctx.config.embed(name, t, dim) for t in texts]
        if isinstance(dims, int) and not isinstance(dims, bool):
            vectors = [truncate_dims(v, dims) for v in vectors]
        out: dict[str, Any] = {"model": model, "embeddings": vectors}
        out.update(_durations(done))
        out["prompt_eval_count"] = n_tokens
        return json_response(out)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """Legacy endpoint: one prompt, ``{"embedding": [...]}``, no usage."""
        begun = await self._begin(request)
        if isinstance(begun, web.Response):
            return begun
        body, log, eng, plan = begun
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            return _logged(log, ollama_error(400, "invalid input type"))
        if not prompt:
            return _logged(log, json_response({"embedding": []}))
        n_tokens = count_tokens(prompt)
        done = await self._prefill(request, log, eng, plan, n_tokens, body.get("keep_alive"))
        if not isinstance(done, GenResult):
            return done
        vec = self.ctx.config.embed(canonical_name(body["model"]), prompt, eng.spec.embedding_dim)
        return json_response({"embedding": vec})

    async def _prefill(
        self,
        request: web.Request,
        log: dict[str, Any],
        eng: ModelEngine,
        plan: FaultPlan,
        n_tokens: int,
        keep_alive: Any,
    ) -> web.StreamResponse | GenResult:
        return await run_prefill(
            request,
            self.ctx.stats,
            eng,
            n_tokens,
            plan,
            log,
            self._errors,
            manage_residency=True,
            keep_alive_s=parse_keep_alive(keep_alive),
        )


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _durations(res: GenResult) -> dict[str, int]:
    out = {
        "total_duration": int((time.time() - res.wall_arrival) * 1e9),
        "load_duration": int(res.load_s * 1e9),
    }
    return {k: v for k, v in out.items() if v}


def _logged(log: dict[str, Any], resp: web.Response) -> web.Response:
    log["status"] = resp.status
    return resp
