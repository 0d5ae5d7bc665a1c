"""The model catalogue's defaults: logical models, what each engine calls them, per-task models,
fallback chains (the seed report's sections 1.2 and 1.3).

memOS speaks Ollama's names (``qwen3:8b``); vLLM serves Hugging Face ids (``Qwen/Qwen3-8B``).
Both services reason in logical (Ollama-style) names; the router translates at the provider edge.
"""

from __future__ import annotations

from llmcore.vocabulary import ProviderName, TaskName

# The seed report's models (section 1.2) and their Hugging Face counterparts.
DEFAULT_ENGINE_NAMES: dict[str, dict[ProviderName, str]] = {
    "qwen3:8b": {"ollama": "qwen3:8b", "vllm": "Qwen/Qwen3-8B"},
    "gemma3:4b": {"ollama": "gemma3:4b", "vllm": "google/gemma-3-4b-it"},
    "deepseek-r1:14b": {
        "ollama": "deepseek-r1:14b",
        "vllm": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    },
    "llama3.2:3b": {"ollama": "llama3.2:3b", "vllm": "meta-llama/Llama-3.2-3B-Instruct"},
    "qwen3:30b-a3b": {"ollama": "qwen3:30b-a3b", "vllm": "Qwen/Qwen3-30B-A3B"},
    "llama3.3:70b": {"ollama": "llama3.3:70b", "vllm": "meta-llama/Llama-3.3-70B-Instruct"},
    "mxbai-embed-large": {
        "ollama": "mxbai-embed-large",
        "vllm": "mixedbread-ai/mxbai-embed-large-v1",
    },
}

# Vector length of each embedding model: the router refuses an engine's answer of another length
# (router_service.limits).
DEFAULT_EMBEDDING_DIMENSIONS: dict[str, int] = {"mxbai-embed-large": 1024}

# Seed section 1.3: which model each memOS call site uses.
DEFAULT_TASK_MODELS: dict[TaskName, str] = {
    "classification": "deepseek-r1:14b",
    "analysis": "qwen3:8b",
    "synthesis": "deepseek-r1:14b",
    "reflection": "gemma3:4b",
    "retrieval_evaluation": "gemma3:4b",
    "verification": "gemma3:4b",
    "embedding": "mxbai-embed-large",
}

# Seed section 1.2: model_fallbacks.
DEFAULT_FALLBACKS: dict[str, list[str]] = {
    "llama3.3:70b": ["qwen3:30b-a3b", "qwen3:8b", "llama3.2:3b"],
    "deepseek-r1:14b": ["qwen3:8b", "gemma3:4b"],
    "qwen3:8b": ["llama3.2:3b", "gemma3:4b"],
}

# What each logical model can do beyond plain chat (the catalogue's `capabilities`):
# "thinking" (a reasoning phase that can be switched), "think_levels" (effort levels rather than
# on/off: gpt-oss-style), "tools", "vision" (images on messages). A request asking for what its
# model cannot do is refused, never silently dropped.
DEFAULT_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "qwen3:8b": ("thinking", "tools"),
    "gemma3:4b": ("vision",),
    "deepseek-r1:14b": ("thinking",),
    "llama3.2:3b": ("tools",),
    "qwen3:30b-a3b": ("thinking", "tools"),
    "llama3.3:70b": ("tools",),
    "mxbai-embed-large": (),
}
CAPABILITIES = ("thinking", "think_levels", "tools", "vision")
