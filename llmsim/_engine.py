"""One simulated model: its seats, its clock (prefill, decode steps, contention) and its counters.

Timing model (durations in seconds, each multiplied by ``1 + jitter * U(-1, 1)``):

* prefill of a request = ``uncached_prompt_tokens * prompt_token``. Prefills share the GPU:
  they run one after another (``busy_until``), and each one delays the next token of every
  request already decoding on this model by its compute time (``stall_s`` accumulates it) — the
  interference that gives both engines their inter-token latency tail.
* first token due = end of its prefill + ``ttft`` (fixed per-request overhead).
* decode step with ``n`` requests running = ``itl * (1 + load_factor * (n - 1))``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from llmsim._config import ModelSpec, Timing
from llmsim._metrics import EngineMetrics, ModelGauges
from llmsim._prefix_cache import PrefixCache
from llmsim._scheduler import Admission

__all__ = ["ModelEngine", "Seq"]


@dataclass(slots=True, eq=False)
class Seq:
    """A running request's KV footprint (for ``vllm:kv_cache_usage_perc``)."""

    prompt_tokens: int
    generated: int = 0


class ModelEngine:
    def __init__(
        self,
        spec: ModelSpec,
        timing: Timing,
        admission: Admission,
        *,
        rng: random.Random,
        prefix_cache: PrefixCache | None = None,
        kv_blocks: int = 4096,
        block_size: int = 16,
    ) -> None:
        self.spec = spec
        self.timing = timing
        scale = spec.speed if timing.scale_by_model else 1.0
        self.ttft_s = timing.ttft_ms * scale / 1000.0
        self.prompt_token_s = timing.prompt_token_ms * scale / 1000.0
        self.itl_s = timing.itl_ms * scale / 1000.0
        self.load_s = timing.load_ms * scale / 1000.0
        self.load_factor = timing.load_factor
        self.jitter = timing.jitter
        self.admission = admission
        self.prefix_cache = prefix_cache
        self.kv_blocks = kv_blocks
        self.block_size = block_size
        self.metrics = EngineMetrics()
        self.busy_until = 0.0
        self.stall_s = 0.0  # total prefill compute so far; decoders add what they have not seen
        # Ollama only: loop time until which the model stays loaded (inf = forever).
        self.loaded_until: float | None = None
        self.active: set[Seq] = set()
        self._rng = rng

    # -- clock -----------------------------------------------------------------------------
    def jittered(self, seconds: float) -> float:
        if self.jitter and seconds:
            return seconds * (1.0 + self.jitter * (2.0 * self._rng.random() - 1.0))
        return seconds

    def step_s(self) -> float:
        """Duration of the next decode step given the current batch size."""
        n = self.admission.running
        step = self.itl_s * (1.0 + self.load_factor * (n - 1)) if n > 1 else self.itl_s
        return self.jittered(step)

    def begin_prefill(self, now: float, uncached_tokens: int) -> float:
        """Reserve the GPU for this prefill; return the loop time the first token is due."""
        compute = self.jittered(uncached_tokens * self.prompt_token_s)
        start = max(now, self.busy_until)
        self.busy_until = start + compute
        self.stall_s += compute
        return self.busy_until + self.jittered(self.ttft_s)

    # -- model residency (Ollama) ----------------------------------------------------------
    def ensure_loaded(self, now: float) -> float:
        """Seconds spent loading before this request can run (0 if resident)."""
        if self.loaded_until is not None and self.loaded_until >= now:
            return 0.0
        self.loaded_until = math.inf  # resident while in use; set properly when released
        return self.jittered(self.load_s)

    def keep_alive(self, now: float, seconds: float | None) -> None:
        """Start the unload timer after a request (negative = forever, 0 = unload now)."""
        if seconds is None:
            seconds = 300.0
        if seconds < 0:
            self.loaded_until = math.inf
        elif seconds == 0:
            self.loaded_until = None
        elif self.admission.running <= 1:
            self.loaded_until = now + seconds

    # -- KV accounting ---------------------------------------------------------------------
    def gauges(self) -> ModelGauges:
        bs = self.block_size
        used = sum((s.prompt_tokens + s.generated + bs - 1) // bs for s in self.active)
        return ModelGauges(
            running=self.admission.running,
            waiting=self.admission.waiting,
            kv_usage=min(1.0, used / self.kv_blocks),
        )

    def reset(self) -> None:
        self.metrics = EngineMetrics()
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
