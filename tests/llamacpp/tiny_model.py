"""A tiny random-weight llama-architecture GGUF model for llama.cpp's server, written at test
time with the ``gguf`` package (nothing downloaded).

Byte-level BPE tokenizer (GPT-2 byte-to-unicode pieces, 256 byte tokens, a few merges, ChatML
and thinking / tool-call marker tokens) and a Jinja chat template in the Qwen3 / Hermes shape:
ChatML turns, tools described in the system turn, calls as ``<tool_call>{json}</tool_call>``,
results as ``<tool_response>``, and a generation prompt that opens ``<think>`` unless
``enable_thinking`` is false. With random weights the text is noise, but what llama.cpp
constrains by grammar (a JSON Schema response format, a required tool call) is well formed.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX = 2048

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]
MERGES = [("Ġ", "t"), ("h", "e"), ("i", "n"), ("Ġt", "he")]

# Qwen3 / Hermes shaped, so that llama.cpp's template analysis finds the thinking tags and the
# tool-call markers (kept in a file of its own: Jinja lines are long).
CHAT_TEMPLATE = (Path(__file__).parent / "chat_template.jinja").read_text()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (byte-level BPE pieces)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def write_tiny_model(
    path: Path, seed: int = 0, *, tool_caller: bool = False, embedder: bool = False
) -> Path:
    """Writes the model to ``path`` (a few hundred KB) and returns it. ``tool_caller``: a model
    that starts a tool call at once (for the tool-call tests; its plain text never ends).
    ``embedder``: plain random weights, whose pooled hidden states differ by input (the chat
    models' collapse to one direction)."""
    byte_pieces = list(_bytes_to_unicode().values())
    tokens = [*byte_pieces, *(a + b for a, b in MERGES), *SPECIALS]
    types = [gguf.TokenType.NORMAL] * (len(byte_pieces) + len(MERGES))
    types += [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.USER_DEFINED] * (len(SPECIALS) - 3)
    n_vocab = len(tokens)
    eos = tokens.index("<|im_end|>")

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("llmgateway-tiny-random")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in MERGES])
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_eos_token_id(eos)
    w.add_eot_token_id(eos)
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(seed)

    def t(name: str, *shape: int, scale: float = 0.02) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    # Random, but shaped so that sampling terminates: every token's embedding carries a large
    # constant in dimension 0 that the small random layers barely move, and the final norm keeps
    # only that dimension, so the next-token distribution is one fixed random preference (the
    # text is noise, whatever the context). In it whitespace is unlikely (a JSON grammar allows
    # whitespace everywhere, and a random model would fill max_tokens with it), and the end of
    # thinking and the end of the turn are likely enough to arrive within a few dozen tokens.
    embd = rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32) * 0.02
    if not embedder:
        embd[:, 0] = 4.0
    w.add_tensor("token_embd.weight", embd)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", N_EMBD, N_EMBD)
        t(f"blk.{i}.attn_k.weight", N_EMBD, N_EMBD)
        t(f"blk.{i}.attn_v.weight", N_EMBD, N_EMBD)
        t(f"blk.{i}.attn_output.weight", N_EMBD, N_EMBD)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        t(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        t(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        t(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    norm = np.zeros(N_EMBD, dtype=np.float32)
    norm[0] = 1.0
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32) if embedder else norm)
    out = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    out[:, 0] = rng.standard_normal(n_vocab).astype(np.float32) * 0.15
    pieces = _bytes_to_unicode()
    # Printable ASCII only: a byte of a multi-byte UTF-8 character alone is invalid text, which
    # llama.cpp's output parser cannot split into reasoning and content.
    for b in [*range(0x20), 0x20, 0x7F, *range(0x80, 0x100)]:
        if b != ord("\n"):
            out[tokens.index(pieces[b]), 0] = -2.0
    for special in SPECIALS:
        out[tokens.index(special), 0] = -2.0
    out[eos, 0] = 0.4
    if tool_caller:
        # Starts a call at once: "<tool_call>" then "\n" is where llama.cpp's tool grammar
        # takes over (before it, any text is allowed).
        out[tokens.index("<tool_call>"), 0] = 1.0
        out[tokens.index(pieces[ord("\n")]), 0] = 0.9
        # ... and ends the turn after it (the grammar allows no end before a call is done).
        out[eos, 0] = 1.2
    w.add_tensor("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
