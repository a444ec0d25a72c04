"""Prompt prefixes' keys and values, kept to be reused by later prompts that start the same way.

A prompt is cut in blocks of ``BLOCK`` tokens; a block is keyed by a digest of every token up to
its end (a hash chain, seeded with the LoRA adapter, so adapters never share entries). A new
prompt reuses the longest run of cached blocks from its start and prefills only the rest. Blocks
are kept under a byte budget, least recently used out first; a lookup touches a chain's blocks
from its end to its start, so the blocks nearer the start (shared by more prompts) outlive the
ones after them.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict

import torch

BLOCK = 16


class PrefixCache:
    """Cached blocks: each a ``[layers, 2, kv_heads, BLOCK, head_dim]`` tensor."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        # Only the engine's thread reads and writes it: no lock.
        self._blocks: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    def lookup(self, tokens: list[int], adapter: str) -> tuple[int, list[torch.Tensor]]:
        """The longest cached prefix of ``tokens`` (whole blocks, leaving at least one token to
        prefill, whose logits give the first new token): its length and its blocks (the cache's
        own tensors: read them, never write them)."""
        if not self.enabled:
            return 0, []
        found: list[tuple[bytes, torch.Tensor]] = []
        for digest in _chain(tokens, adapter, (len(tokens) - 1) // BLOCK):
            block = self._blocks.get(digest)
            if block is None:
                break
            found.append((digest, block))
        for digest, _ in reversed(found):
            self._blocks.move_to_end(digest)
        return len(found) * BLOCK, [block for _, block in found]

    def store(self, tokens: list[int], adapter: str, kv: torch.Tensor, first: int = 0) -> None:
        """Keep the whole blocks of ``tokens`` from block ``first`` on that are not cached yet;
        ``kv`` holds their keys and values from token ``first * BLOCK`` on
        (``[layers, 2, kv_heads, tokens, head_dim]``)."""
        if not self.enabled or kv.shape[3] < BLOCK:
            return
        size = kv[:, :, :, :BLOCK].numel() * kv.element_size()
        # Never more blocks than the budget holds: a chain must not push out its own start.
        digests = _chain(tokens, adapter, min(len(tokens) // BLOCK, self.budget // size))
        for number, digest in enumerate(digests[first:]):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)
                continue
            while self.used + size > self.budget:
                _, old = self._blocks.popitem(last=False)
                self.used -= old.numel() * old.element_size()
            self._blocks[digest] = kv[:, :, :, number * BLOCK : (number + 1) * BLOCK].clone()
            self.used += size
        # The chain's start was touched first: make it the most recent again.
        for digest in reversed(digests):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)


def _chain(tokens: list[int], adapter: str, blocks: int) -> list[bytes]:
    """The digests of the first ``blocks`` blocks of ``tokens``: each covers all before it."""
    digest = hashlib.sha256(adapter.encode()).digest()
    digests = []
    for number in range(blocks):
        block = tokens[number * BLOCK : (number + 1) * BLOCK]
        digest = hashlib.sha256(digest + array("q", block).tobytes()).digest()
        digests.append(digest)
    return digests
