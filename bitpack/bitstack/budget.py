"""Memory budgets for BitStack stacks: size parsing, the configuration table, selection.

The table follows spec/bitstack.md §4.4. Config 0 gives every matrix one block; config
τ + 1 is config τ plus step τ of the global order (one more block for one matrix). Its
bytes are the *extra* bytes (every stored tensor that is not a block: embeddings, head,
norms, ``act_scale``) plus the blocks loaded. A budget selects the largest configuration
whose bytes fit, exactly as the reference's ``retrieve_compression_config`` does (the
configuration bytes only grow, so "largest" and "last that fits" agree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BitpackError

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


def parse_size(text: str | int) -> int:
    """Bytes for ``"300MB"`` (decimal KB/MB/GB/TB), ``"1.5GiB"`` (binary KiB/MiB/GiB/TiB),
    ``"512B"`` or a plain integer (bytes). Fractions round down to whole bytes."""
    if isinstance(text, bool):
        raise BitpackError(f"not a size: {text!r}")
    if isinstance(text, (int, np.integer)):
        if text < 0:
            raise BitpackError(f"a size cannot be negative: {text}")
        return int(text)
    if not isinstance(text, str):
        raise BitpackError(f"not a size: {text!r}")
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise BitpackError(f"not a size: {text!r} (write e.g. 300MB, 1.5GiB, 750MiB or a number of bytes; "
                           "KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024)")
    number = m.group(1)
    if "." in number:
        from fractions import Fraction

        return int(Fraction(number) * _UNITS[unit])
    return int(number) * _UNITS[unit]


def format_size(n: int) -> str:
    """``n`` bytes in MiB/GiB for messages (exact bytes are always given beside it)."""
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.2f} MiB"
    return f"{n / 2**10:.1f} KiB"


def blocks_summary(counts: Any, total: int | None = None) -> dict[str, Any]:
    """{min, max, mean} of blocks per matrix (``total``: their sum, when the caller keeps it)."""
    counts = np.asarray(counts)
    total = int(counts.sum()) if total is None else total
    return {"min": int(counts.min()), "max": int(counts.max()), "mean": round(total / counts.size, 6)}


@dataclass
class BudgetTable:
    """The configurations of one stack, held compactly: the order (one matrix index per step)
    and the cumulative bytes, instead of 1 + (n-1)·M dictionaries."""

    matrices: list[str]  # canonical names, in matrix-index order
    block_bytes: list[int]  # bytes of one block of each matrix
    extra_bytes: int  # every stored tensor that is not a block
    n_blocks: int  # blocks stored per matrix (niter)
    order: list[int]  # step τ adds one block to matrix order[τ]
    _cum: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m = len(self.matrices)
        if len(self.block_bytes) != m:
            raise BitpackError(f"budget table: {len(self.block_bytes)} block sizes for {m} matrices")
        order = np.asarray(self.order, dtype=np.int64).reshape(-1)
        if order.size and (order.min() < 0 or order.max() >= m):
            raise BitpackError(f"block order names matrix {int(order.max() if order.max() >= m else order.min())}; "
                               f"the stack has {m} matrices")
        if order.size:
            counts = np.bincount(order, minlength=m) + 1
            if counts.max() > self.n_blocks:
                j = int(np.argmax(counts))
                raise BitpackError(f"block order gives {self.matrices[j]} {int(counts[j])} blocks; "
                                   f"the stack has {self.n_blocks}")
        self.order = [int(j) for j in order]
        sizes = np.asarray(self.block_bytes, dtype=np.int64)
        base = int(self.extra_bytes) + int(sizes.sum())
        self._cum = np.concatenate([[base], base + np.cumsum(sizes[order]) if order.size else []]).astype(np.int64)

    def __len__(self) -> int:
        return len(self._cum)

    @property
    def bytes(self) -> np.ndarray:
        """Bytes of every configuration (int64, non-decreasing)."""
        return self._cum

    @property
    def min_bytes(self) -> int:
        return int(self._cum[0])

    @property
    def max_bytes(self) -> int:
        return int(self._cum[-1])

    def config_bytes(self, i: int) -> int:
        return int(self._cum[i])

    def counts(self, i: int) -> np.ndarray:
        """Blocks per matrix (matrix-index order) in configuration ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        return np.bincount(np.asarray(self.order[:i], dtype=np.int64), minlength=len(self.matrices)) + 1

    def blocks(self, i: int) -> dict[str, int]:
        return dict(zip(self.matrices, (int(c) for c in self.counts(i))))

    def bytes_for(self, counts: Mapping[str, int]) -> int:
        """Bytes of an arbitrary per-matrix selection (explicit counts need not be a table entry)."""
        return int(self.extra_bytes) + sum(self.block_bytes[j] * int(counts[name])
                                           for j, name in enumerate(self.matrices))

    def summary(self) -> list[dict[str, Any]]:
        """Every configuration as {bytes, blocks_per_matrix: {min, max, mean}} (inspect's budget_table)."""
        m = len(self.matrices)
        counts = np.ones(m, dtype=np.int64)
        total = m
        out = []
        for i in range(len(self)):
            if i:
                counts[self.order[i - 1]] += 1
                total += 1
            out.append({"bytes": int(self._cum[i]), "blocks_per_matrix": blocks_summary(counts, total)})
        return out


def table_from_configs(matrices: Sequence[str], block_bytes: Sequence[int], extra_bytes: int, n_blocks: int,
                       configs: Sequence[Mapping[str, int]], where: str) -> BudgetTable:
    """A table from a reference compression_config.json's per-configuration block counts
    (already keyed by canonical name). Each configuration must be the previous one plus one
    block of one matrix, starting from one block everywhere, as ``generate_configs`` writes them."""
    index = {name: j for j, name in enumerate(matrices)}
    if not configs:
        raise BitpackError(f"{where}: compression_config.json lists no configurations")
    prev = None
    order = []
    for i, cfg in enumerate(configs):
        if set(cfg) != set(index):
            missing = sorted(set(index) - set(cfg))
            extra = sorted(set(cfg) - set(index))
            raise BitpackError(f"{where}: compression_config.json entry {i} "
                               + (f"lacks {', '.join(missing[:4])}" if missing else f"names unknown {', '.join(extra[:4])}"))
        cur = np.array([cfg[name] for name in matrices], dtype=np.int64)
        if prev is None:
            if (cur != 1).any():
                raise BitpackError(f"{where}: compression_config.json entry 0 must give every matrix 1 block")
        else:
            diff = cur - prev
            if diff.sum() != 1 or diff.min() < 0 or diff.max() != 1:
                raise BitpackError(f"{where}: compression_config.json entry {i} is not entry {i - 1} plus one "
                                   "block of one matrix")
            order.append(int(np.argmax(diff)))
        prev = cur
    return BudgetTable(list(matrices), list(block_bytes), extra_bytes, n_blocks, order)


@dataclass
class Selection:
    """Which blocks a stack was opened with, and how many bytes that cost (``Model.stack``)."""

    budget_bytes: int | None  # the budget asked for (None: explicit or full counts)
    config: int | None  # index of the chosen table entry (None: counts not from the table)
    config_bytes: int  # bytes of the selection: extras plus the selected blocks
    blocks: dict[str, int]  # blocks per matrix, canonical names
    table: BudgetTable | None
    extra_bytes: int = 0
    how: str = "all"  # "budget", "uniform", "explicit" or "all"
    bytes_loaded: int = 0  # bytes of distinct tensors read so far (blocks and extras)
    k: int | None = None
    n_blocks: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the stack's codec_params
    source: Any = None  # the opened stack (block access for stack-to-stack copies)
    _seen: set = field(default_factory=set, repr=False)

    def touch(self, name: str, nbytes: int) -> None:
        """Count ``nbytes`` once for tensor ``name`` (repeated reads do not add up)."""
        if name not in self._seen:
            self._seen.add(name)
            self.bytes_loaded += int(nbytes)

    def as_dict(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget_bytes, "config": self.config, "config_bytes": self.config_bytes,
                "extra_bytes": self.extra_bytes, "how": self.how, "bytes_loaded": self.bytes_loaded,
                "blocks": dict(self.blocks)}


def select(table: BudgetTable, budget_bytes: int) -> int:
    """Index of the largest configuration whose bytes are at most ``budget_bytes``."""
    budget_bytes = parse_size(budget_bytes)
    i = int(np.searchsorted(table.bytes, budget_bytes, side="right")) - 1
    if i < 0:
        raise BitpackError(f"a budget of {budget_bytes} bytes ({format_size(budget_bytes)}) is below the smallest "
                           f"configuration of this stack: {table.min_bytes} bytes ({format_size(table.min_bytes)}, "
                           f"one block per matrix plus {table.extra_bytes} bytes of embeddings, norms and scales); "
                           f"the full stack is {table.max_bytes} bytes ({format_size(table.max_bytes)})")
    return i


def uniform_counts(matrices: Sequence[str], n: int, n_blocks: int) -> dict[str, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= n_blocks:
        raise BitpackError(f"blocks must be a whole number from 1 to {n_blocks} (the blocks stored per matrix), "
                           f"got {n!r}")
    return {name: int(n) for name in matrices}


def explicit_counts(matrices: Sequence[str], given: Mapping[str, int], n_blocks: int,
                    aliases: Mapping[str, str] | None = None) -> dict[str, int]:
    """Per-matrix counts: every matrix named exactly once (canonical names, or the aliases
    given, e.g. the reference's ``layer.0.self_attn.q_proj``), each 1..n_blocks."""
    aliases = aliases or {}
    out: dict[str, int] = {}
    unknown = []
    for key, n in given.items():
        name = key if key in matrices else aliases.get(key)
        if name is None:
            unknown.append(key)
            continue
        if name in out:
            raise BitpackError(f"block counts name {name} twice")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= n_blocks:
            raise BitpackError(f"block count for {key} must be 1..{n_blocks}, got {n!r}")
        out[name] = int(n)
    if unknown:
        raise BitpackError(f"block counts name matrices the stack does not have: {', '.join(map(str, unknown[:4]))}")
    missing = [name for name in matrices if name not in out]
    if missing:
        raise BitpackError(f"block counts must name every matrix; missing {len(missing)}: {', '.join(missing[:4])}"
                           + (" ..." if len(missing) > 4 else ""))
    return {name: out[name] for name in matrices}
