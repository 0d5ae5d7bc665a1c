"""The embedding parity gate as a service: embeds a corpus on both engines (the control service
calls them directly, as it already does for health probes), measures parity
(``control_service.parity``), keeps the last result and audits it, and guards moving
``flags.embedding_provider`` off Ollama.

Why the control service and not a router: a router pins and falls back per request, and what is
measured here is the engines themselves with the catalogue's embedding model on each; the control
service owns the refusal, so it owns the evidence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from control_service import parity
from control_service.controller import Controller
from control_service.errors import FieldViolation, InvalidChange, PreconditionFailed
from control_service.rollback.criteria_semantic import ParityResult
from control_service.state import ChangeMeta, Flags
from control_service.store import Decision
from llmcore.vocabulary import ProviderName

BATCH = 64
_REINDEX = re.compile(r"re-?index", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Measurement:
    model: str
    engine_models: dict[ProviderName, str]
    parity: parity.Parity
    at: float


def moves_embed_off_ollama(before: Flags, after: Flags) -> bool:
    """Whether a flags change sends Embed somewhere other than Ollama: pinned to vLLM, or to
    "primary", which follows the split and PRIMARY onto vLLM."""
    return before.embedding_provider == "ollama" and after.embedding_provider != "ollama"


class ParityService:
    def __init__(
        self,
        client: httpx.AsyncClient,
        base_urls: dict[ProviderName, str],
        controller: Controller,
        *,
        corpus_file: Path | None = None,
        min_cosine_p10: float = parity.DEFAULT_MIN_COSINE_P10,
        min_overlap: float = parity.DEFAULT_MIN_OVERLAP,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._urls = base_urls
        self._controller = controller
        self.corpus_file = corpus_file
        self.min_cosine_p10 = min_cosine_p10
        self.min_overlap = min_overlap
        self._timeout_s = timeout_s
        self._clock = clock
        self.last: ParityResult | None = None

    # --- the guard ---------------------------------------------------------------------------

    def check_move(self, before: Flags, after: Flags, force: bool, reason: str) -> bool:
        """Refuse moving Embed off Ollama while parity is unmeasured or failed, unless forced
        with a reason naming the re-index. Returns whether the change is such a forced move."""
        if not moves_embed_off_ollama(before, after):
            return False
        last = self.last
        if last is not None and last.passed:
            return False
        if not force:
            why = "unmeasured" if last is None else f"below the thresholds ({last.detail})"
            raise PreconditionFailed(
                f"cannot move embedding_provider to {after.embedding_provider}: embedding parity "
                f"is {why}; memOS's index holds Ollama's vectors. Run llmctl embeddings parity, "
                "or re-index (docs/shadow.md) and force with a reason naming the re-index",
                reason="EMBEDDING_PARITY",
                subject="flags.embedding_provider",
            )
        if not _REINDEX.search(reason):
            raise InvalidChange(
                [
                    FieldViolation(
                        "meta.reason",
                        "a forced embedding_provider move must name the re-index "
                        "(e.g. 're-index of the memory store onto vLLM done')",
                    )
                ]
            )
        return True

    # --- the measurement -------------------------------------------------------------------

    def corpus(self, texts: Sequence[str], sample: int) -> list[str]:
        out = [t for t in texts if t.strip()]
        if not out and self.corpus_file is not None:
            out = [line for line in self.corpus_file.read_text().splitlines() if line.strip()]
        bad = []
        if not out:
            bad.append(FieldViolation("texts", "give texts, or configure parity_corpus_file"))
        if sample < 0:
            bad.append(FieldViolation("sample", "must not be negative"))
        if bad:
            raise InvalidChange(bad)
        if sample and len(out) > sample:
            step = len(out) / sample
            out = [out[int(i * step)] for i in range(sample)]
        if len(out) > parity.MAX_TEXTS:
            raise InvalidChange(
                [FieldViolation("texts", f"at most {parity.MAX_TEXTS} (use sample)")]
            )
        if len(out) < parity.MIN_TEXTS:
            raise InvalidChange([FieldViolation("texts", f"at least {parity.MIN_TEXTS} texts")])
        return out

    async def measure(
        self, meta: ChangeMeta, texts: Sequence[str], k: int, sample: int
    ) -> Measurement:
        if k < 0:
            raise InvalidChange([FieldViolation("k", "must not be negative")])
        corpus = self.corpus(texts, sample)
        catalog = self._controller.current.state.catalog
        model = catalog.model_for("embedding") or ""
        entry = catalog.model(model)
        if entry is None or not entry.ollama_name or not entry.vllm_name:
            raise PreconditionFailed(
                f"the embedding model {model!r} is not served by both engines",
                reason="MODEL_NOT_SERVED",
                subject="catalog",
            )
        names: dict[ProviderName, str] = {"ollama": entry.ollama_name, "vllm": entry.vllm_name}
        vectors = {p: await self._embed(p, names[p], corpus) for p in ("ollama", "vllm")}
        result = parity.measure(
            vectors["ollama"],
            vectors["vllm"],
            k or parity.DEFAULT_K,
            self.min_cosine_p10,
            self.min_overlap,
        )
        at = self._clock()
        self.last = ParityResult(
            at,
            len(corpus),
            result.cosine_mean,
            result.cosine_p10,
            result.overlap_at_k,
            result.k,
            result.passed,
            result.detail,
        )
        evidence: dict[str, Any] = {"parity": asdict(self.last), "model": model}
        await self._controller.record(
            Decision(
                meta.actor or "anonymous",
                "embedding_parity",
                meta.reason or ("passed" if result.passed else f"failed: {result.detail}"),
                evidence,
            )
        )
        return Measurement(model, names, result, at)

    async def _embed(self, provider: ProviderName, model: str, texts: list[str]) -> list[Any]:
        base = self._urls[provider].rstrip("/")
        out: list[Any] = []
        for i in range(0, len(texts), BATCH):
            batch = texts[i : i + BATCH]
            try:
                if provider == "ollama":
                    resp = await self._client.post(
                        f"{base}/api/embed",
                        json={"model": model, "input": batch},
                        timeout=self._timeout_s,
                    )
                    resp.raise_for_status()
                    out += resp.json()["embeddings"]
                else:
                    resp = await self._client.post(
                        f"{base}/v1/embeddings",
                        json={"model": model, "input": batch},
                        timeout=self._timeout_s,
                    )
                    resp.raise_for_status()
                    out += [d["embedding"] for d in sorted(resp.json()["data"], key=_index)]
            except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                raise PreconditionFailed(
                    f"{provider} did not embed the corpus ({type(exc).__name__}): "
                    "parity stays unmeasured",
                    reason="ENGINE_UNAVAILABLE",
                    subject=provider,
                ) from exc
        if len(out) != len(texts):
            raise PreconditionFailed(
                f"{provider} returned {len(out)} vectors for {len(texts)} texts",
                reason="ENGINE_UNAVAILABLE",
                subject=provider,
            )
        return out


def _index(d: Any) -> int:
    return int(d.get("index", 0))
