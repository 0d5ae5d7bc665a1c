"""Automatic prefix caching as vLLM does it: full blocks of prompt tokens, chained hashes, LRU.

A block's hash covers its tokens and its parent's hash, so a block only hits when everything
before it is identical. Hits are counted in tokens, like ``vllm:prefix_cache_hits``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixCache"]


class PrefixCache:
    __slots__ = ("_blocks", "block_size", "capacity")

    def __init__(self, block_size: int, capacity_blocks: int) -> None:
        self.block_size = block_size
        self.capacity = capacity_blocks
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()

    def lookup_and_insert(self, namespace: str, tokens: Sequence[str]) -> int:
        """Return how many leading prompt tokens are cached, then cache all full blocks.

        At least one prompt token is always computed (as in vLLM), so a fully cached prompt
        reports one block less.
        """
        bs = self.block_size
        n_full = len(tokens) // bs
        blocks = self._blocks
        parent = hash(namespace)
        hits = 0
        counting = True
        for i in range(n_full):
            parent = hash((parent, tuple(tokens[i * bs : (i + 1) * bs])))
            if parent in blocks:
                blocks.move_to_end(parent)
                if counting:
                    hits += 1
            else:
                counting = False
                blocks[parent] = None
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        max_cached = ((len(tokens) - 1) // bs) * bs if tokens else 0
        return min(hits * bs, max_cached)
