"""Default GPU memory needs of the seed's models, per engine (docs/gpu.md has the table).

Per engine because the two load different weights: Ollama pulls the model's default GGUF tag
(Q4_K_M for the LLMs, about 0.6 bytes per parameter), vLLM loads the Hugging Face checkpoint
unquantised, in fp16 on the seed's TITAN RTX (sm75 has no bf16): 2 bytes per parameter. The
same logical model differs by 3x (qwen3:8b: 5.2 GB vs 16.4 GB), so one number would refuse
Ollama models that fit or let vLLM be pointed at models that cannot load.

The numbers are the weights only: Ollama's download size of the default tag as listed on
ollama.com, and the parameter count of the Hugging Face model card times two bytes. KV cache,
CUDA context and activations come on top and are what the control service's
``gpu_headroom_gb`` is for (vLLM also preallocates ``gpu_memory_utilization`` of the card for
its KV cache, which is why the headroom, not these sizes, should absorb it).
"""

from __future__ import annotations

from llmcore.vocabulary import ProviderName

GB = 1_000_000_000

# Logical model -> engine -> bytes. Ollama: ollama.com download size of the default tag.
# vLLM: parameters (Hugging Face model card) x 2 bytes (fp16).
DEFAULT_VRAM_BYTES: dict[str, dict[ProviderName, int]] = {
    # Ollama 5.2 GB (Q4_K_M); Qwen/Qwen3-8B 8.2 B params.
    "qwen3:8b": {"ollama": int(5.2 * GB), "vllm": int(16.4 * GB)},
    # Ollama 3.3 GB (Q4_K_M); google/gemma-3-4b-it 4.3 B params (vision tower included).
    "gemma3:4b": {"ollama": int(3.3 * GB), "vllm": int(8.6 * GB)},
    # Ollama 9.0 GB (Q4_K_M); DeepSeek-R1-Distill-Qwen-14B 14.8 B params.
    "deepseek-r1:14b": {"ollama": int(9.0 * GB), "vllm": int(29.6 * GB)},
    # Ollama 2.0 GB (Q4_K_M); Llama-3.2-3B-Instruct 3.21 B params.
    "llama3.2:3b": {"ollama": int(2.0 * GB), "vllm": int(6.4 * GB)},
    # Ollama 19 GB (Q4_K_M); Qwen3-30B-A3B 30.5 B params (all experts stay resident).
    "qwen3:30b-a3b": {"ollama": int(19.0 * GB), "vllm": int(61.0 * GB)},
    # Ollama 43 GB (Q4_K_M); Llama-3.3-70B-Instruct 70.6 B params.
    "llama3.3:70b": {"ollama": int(43.0 * GB), "vllm": int(141.2 * GB)},
    # Ollama 670 MB (F16); mxbai-embed-large-v1 335 M params.
    "mxbai-embed-large": {"ollama": int(0.67 * GB), "vllm": int(0.67 * GB)},
}


def default_vram_bytes(model: str, engine: ProviderName) -> int:
    """The default size of ``model`` on ``engine``; 0 (unknown) for models not in the table."""
    return DEFAULT_VRAM_BYTES.get(model, {}).get(engine, 0)
