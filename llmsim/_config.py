"""Simulator settings: flavour, model catalogue, timing profiles and the one config object.

The config is a plain pydantic model (no environment reading) so tests are hermetic; the CLI
entry point (``main.py``) is the one place that reads the environment.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmsim._faults import Faults
from llmsim._meaning import concept_embed
from llmsim._textgen import embed

__all__ = [
    "DEFAULT_OLLAMA_MODELS",
    "DEFAULT_VLLM_MODELS",
    "PROFILES",
    "Flavor",
    "ModelSpec",
    "ProfileName",
    "SimConfig",
    "Timing",
]


class Flavor(StrEnum):
    """Which engine's wire protocol the simulator speaks."""

    OLLAMA = "ollama"
    VLLM = "vllm"


class ModelSpec(BaseModel):
    """One model in the catalogue.

    ``speed`` scales every duration for this model when the profile has ``scale_by_model`` (the
    realistic profiles): 1.0 is the 8B reference model, larger models are slower.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["generate", "embedding"] = "generate"
    embedding_dim: int = Field(default=4096, ge=1)
    family: str = "llama"
    parameter_size: str = "8B"
    parameter_count: int = 8_000_000_000
    quantization: str = "Q4_K_M"
    context_length: int = Field(default=32768, ge=16)
    size_bytes: int = 5_000_000_000
    capabilities: tuple[str, ...] = ("completion",)
    speed: float = Field(default=1.0, gt=0)


def _gen(
    name: str,
    family: str,
    psize: str,
    pcount: int,
    ctx: int,
    size: int,
    dim: int,
    caps: tuple[str, ...],
    speed: float,
    quant: str = "Q4_K_M",
) -> ModelSpec:
    return ModelSpec(
        name=name,
        family=family,
        parameter_size=psize,
        parameter_count=pcount,
        context_length=ctx,
        size_bytes=size,
        embedding_dim=dim,
        capabilities=caps,
        speed=speed,
        quantization=quant,
    )


def _emb(
    name: str, family: str, psize: str, pcount: int, ctx: int, size: int, dim: int
) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind="embedding",
        family=family,
        parameter_size=psize,
        parameter_count=pcount,
        context_length=ctx,
        size_bytes=size,
        embedding_dim=dim,
        capabilities=("embedding",),
        speed=0.1,
        quantization="F16",
    )


_THINK = ("completion", "tools", "thinking")

DEFAULT_OLLAMA_MODELS: tuple[ModelSpec, ...] = (
    _gen("qwen3:8b", "qwen3", "8.2B", 8_190_735_360, 40960, 5_225_388_164, 4096, _THINK, 1.0),
    _gen(
        "gemma3:4b",
        "gemma3",
        "4.3B",
        4_300_079_472,
        131072,
        3_338_801_804,
        2560,
        ("completion", "vision"),
        0.6,
    ),
    _gen(
        "deepseek-r1:14b",
        "qwen2",
        "14.8B",
        14_770_033_664,
        131072,
        8_988_112_040,
        5120,
        ("completion", "thinking"),
        1.7,
    ),
    _gen(
        "llama3.2:3b",
        "llama",
        "3.2B",
        3_212_749_888,
        131072,
        2_019_393_189,
        3072,
        ("completion", "tools"),
        0.45,
    ),
    _gen(
        "qwen3:30b-a3b",
        "qwen3moe",
        "30.5B",
        30_532_122_624,
        40960,
        18_556_700_761,
        2048,
        _THINK,
        1.3,
    ),
    _gen(
        "llama3.3:70b",
        "llama",
        "70.6B",
        70_553_706_496,
        131072,
        42_520_413_916,
        8192,
        ("completion", "tools"),
        8.0,
    ),
    _emb("mxbai-embed-large", "bert", "334M", 334_090_240, 512, 669_615_493, 1024),
    _emb("nomic-embed-text", "nomic-bert", "137M", 136_727_040, 2048, 274_302_450, 768),
)

DEFAULT_VLLM_MODELS: tuple[ModelSpec, ...] = (
    _gen(
        "Qwen/Qwen3-8B",
        "qwen3",
        "8.2B",
        8_190_735_360,
        40960,
        16_381_470_720,
        4096,
        _THINK,
        1.0,
        "BF16",
    ),
    _gen(
        "google/gemma-3-4b-it",
        "gemma3",
        "4.3B",
        4_300_079_472,
        131072,
        8_600_158_944,
        2560,
        ("completion", "vision"),
        0.6,
        "BF16",
    ),
    _gen(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        "qwen2",
        "14.8B",
        14_770_033_664,
        131072,
        29_540_067_328,
        5120,
        ("completion", "thinking"),
        1.7,
        "BF16",
    ),
    _gen(
        "meta-llama/Llama-3.2-3B-Instruct",
        "llama",
        "3.2B",
        3_212_749_888,
        131072,
        6_425_499_776,
        3072,
        ("completion", "tools"),
        0.45,
        "BF16",
    ),
    _gen(
        "Qwen/Qwen3-30B-A3B",
        "qwen3moe",
        "30.5B",
        30_532_122_624,
        40960,
        61_064_245_248,
        2048,
        _THINK,
        1.3,
        "BF16",
    ),
    _emb("mixedbread-ai/mxbai-embed-large-v1", "bert", "334M", 334_090_240, 512, 669_615_493, 1024),
)


class Timing(BaseModel):
    """Resolved timing model (see docs/simulator.md for the formulas).

    prefill  = ttft_ms + uncached_prompt_tokens * prompt_token_ms
    step(n)  = itl_ms * (1 + load_factor * (n - 1))       n = requests running on the model
    Each duration is multiplied by ``1 + jitter * U(-1, 1)``; with ``scale_by_model`` also by the
    model's ``speed``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_ms: float = Field(ge=0)
    prompt_token_ms: float = Field(ge=0)
    itl_ms: float = Field(ge=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    load_factor: float = Field(default=0.0, ge=0)
    completion_tokens: int = Field(ge=1)
    load_ms: float = Field(default=0.0, ge=0)
    scale_by_model: bool = False
    num_parallel: int = Field(default=1, ge=1)


ProfileName = Literal["test", "titan-ollama", "titan-vllm"]

# How these numbers were chosen is explained in docs/simulator.md ("Profiles").
PROFILES: dict[str, Timing] = {
    "test": Timing(
        ttft_ms=2.0,
        prompt_token_ms=0.002,
        itl_ms=1.0,
        jitter=0.0,
        load_factor=0.0,
        completion_tokens=24,
    ),
    "titan-ollama": Timing(
        ttft_ms=80.0,
        prompt_token_ms=0.9,
        itl_ms=41.3,
        jitter=0.1,
        load_factor=0.37,
        completion_tokens=200,
        load_ms=2500.0,
        scale_by_model=True,
        num_parallel=4,
    ),
    "titan-vllm": Timing(
        ttft_ms=20.0,
        prompt_token_ms=0.25,
        itl_ms=35.0,
        jitter=0.1,
        load_factor=0.0131,
        completion_tokens=200,
        scale_by_model=True,
    ),
}

_DEFAULT_VERSION = {Flavor.OLLAMA: "0.12.6", Flavor.VLLM: "0.11.0"}


class SimConfig(BaseModel):
    """Everything a simulator instance needs. ``None`` means "take it from the profile"."""

    model_config = ConfigDict(extra="forbid")

    flavor: Flavor = Flavor.OLLAMA
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    profile: ProfileName = "test"
    seed: int = 0
    models: list[ModelSpec] | None = None

    # Ollama: slots per model (OLLAMA_NUM_PARALLEL) and the global queue (OLLAMA_MAX_QUEUE).
    num_parallel: int | None = Field(default=None, ge=1)
    max_queue: int = Field(default=512, ge=0)
    # vLLM: sequences per continuous batch; the rest wait (no limit, as in vLLM).
    max_num_seqs: int = Field(default=256, ge=1)

    # Timing overrides (milliseconds unless named otherwise).
    ttft_ms: float | None = Field(default=None, ge=0)
    prompt_token_ms: float | None = Field(default=None, ge=0)
    itl_ms: float | None = Field(default=None, ge=0)
    jitter: float | None = Field(default=None, ge=0, le=1)
    load_factor: float | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=1)
    load_ms: float | None = Field(default=None, ge=0)

    # vLLM prefix cache / KV accounting.
    block_size: int = Field(default=16, ge=1)
    kv_cache_blocks: int = Field(default=4096, ge=1)
    enable_prefix_caching: bool = True
    prompt_tokens_details: bool = True
    # The delta field the simulated vLLM's reasoning parser writes: "reasoning" (current vLLM)
    # or "reasoning_content" (older vLLM, llama.cpp).
    vllm_reasoning_field: Literal["reasoning", "reasoning_content"] = "reasoning"

    faults: Faults = Field(default_factory=lambda: Faults())
    # Meaning (llmsim._meaning, docs/simulator.md): "words" answers are seeded word salad;
    # "concepts" answers mean what the prompt asks (the same on both engines) in this engine's
    # own words (faults.unrelated_answers makes them mean something else). "hash" embeddings
    # carry no meaning; "concepts" embeddings do, and agree across engines unless skewed.
    answer_mode: Literal["words", "concepts"] = "words"
    embedding_mode: Literal["hash", "concepts"] = "hash"
    embedding_skew: float = Field(default=0.0, ge=0, le=1)
    engine_version: str | None = None
    request_log_size: int = Field(default=200, ge=0)
    shutdown_grace_s: float = Field(default=0.2, ge=0)

    def embed(self, model: str, text: str, dim: int) -> list[float]:
        """The embedding of ``text`` by ``model`` under this config's embedding mode."""
        if self.embedding_mode == "concepts":
            skew_key = f"{self.flavor.value}:{model}"
            return concept_embed(text, dim, skew=self.embedding_skew, skew_key=skew_key)
        return embed(model, text, dim)

    def timing(self) -> Timing:
        base = PROFILES[self.profile]
        overrides = {
            k: v
            for k, v in {
                "ttft_ms": self.ttft_ms,
                "prompt_token_ms": self.prompt_token_ms,
                "itl_ms": self.itl_ms,
                "jitter": self.jitter,
                "load_factor": self.load_factor,
                "completion_tokens": self.completion_tokens,
                "load_ms": self.load_ms,
                "num_parallel": self.num_parallel,
            }.items()
            if v is not None
        }
        return base.model_copy(update=overrides)

    def catalogue(self) -> list[ModelSpec]:
        if self.models is not None:
            return list(self.models)
        defaults = DEFAULT_OLLAMA_MODELS if self.flavor is Flavor.OLLAMA else DEFAULT_VLLM_MODELS
        return list(defaults)

    def version(self) -> str:
        return self.engine_version or _DEFAULT_VERSION[self.flavor]
