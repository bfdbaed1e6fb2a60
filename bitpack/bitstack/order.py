"""The global block order of a BitStack stack (spec/bitstack.md §4).

An order is a list of matrix indices, one per *step*: step τ adds one block to matrix
``order[τ]``. Every matrix starts with one block, so an order over M matrices and n blocks
has (n - 1)·M steps. bitpack's orders are level-major: level b (matrices going from b to
b + 1 blocks) holds every matrix exactly once, so block counts never differ by more than
one (§4.1), and within a level the matrices are sorted by importance. Strategies:

* ``output``: the reduction of the matrix's output error ‖X(W - Ŵ)ᵀ‖² on its calibration
  activations that the next block gives, per byte, largest first (default with calibration);
* ``weight``: the same with the weight error ‖W - Ŵ‖²_F (spec §7 "residual-norm" greedy;
  default without calibration);
* ``uniform``: matrices in model order within every level;
* ``ppl``: the reference's scoring (§4.2): perplexity with one matrix given one more block,
  lowest first, with the NaN rule of §4.3.

Only the arithmetic of orders lives here; running a model with chosen block counts is
``bitpack.models.stack_scoring`` and perplexity itself ``bitpack.pipelines.ppl``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BitpackError
from .avd import reconstruct

ORDERS = ("output", "weight", "uniform", "ppl")
ORDER_ALIASES = {"residual-norm": "weight", "average": "ppl"}  # spec §7 and the reference's names
DEFAULT_MAX_PPL_PASSES = 1024


def choose_order(order: str | None, *, calibrated: bool, can_evaluate: bool = False) -> tuple[str, str]:
    """(strategy, how it was chosen) for a requested strategy, or the default."""
    if order is None:
        if calibrated:
            return "output", "default: calibration statistics were given"
        return "weight", "default: no calibration statistics (spec §7 residual-norm greedy)"
    name = ORDER_ALIASES.get(order, order)
    if name not in ORDERS:
        raise BitpackError(f"unknown block order {order!r}; choose one of {', '.join(ORDERS)}")
    if name == "output" and not calibrated:
        raise BitpackError("--order output ranks blocks by the output error on calibration activations; "
                           "give --calibration FILE, or use --order weight (no data needed)")
    if name == "ppl" and not can_evaluate:
        raise BitpackError("--order ppl measures perplexity on calibration windows; give --calibration FILE "
                           "(or pass an evaluate callable)")
    return name, "requested"


def n_steps(n_matrices: int, n_blocks: int) -> int:
    return max(n_blocks - 1, 0) * n_matrices


def check_order(order: Sequence[int], n_matrices: int, n_blocks: int, where: str = "block order") -> list[int]:
    """``order`` as a list of ints, checked to be level-major: (n - 1) levels, each a
    permutation of the M matrix indices."""
    try:
        arr = np.asarray(order)
    except (ValueError, TypeError):  # ragged or nested: hostile metadata
        raise BitpackError(f"{where}: not a list of matrix indices") from None
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise BitpackError(f"{where}: not a list of matrix indices")
    want = n_steps(n_matrices, n_blocks)
    if arr.size != want:
        raise BitpackError(f"{where}: {arr.size} steps; {n_matrices} matrices of {n_blocks} blocks need "
                           f"{want} ((n - 1) x M)")
    if arr.size:
        levels = arr.reshape(n_blocks - 1, n_matrices)
        perm = np.sort(levels, axis=1)
        bad = np.flatnonzero((perm != np.arange(n_matrices)).any(axis=1))
        if bad.size:
            raise BitpackError(f"{where}: level {int(bad[0]) + 1} does not give every matrix exactly one block "
                               "(the order must be level-major, spec/bitstack.md §4.1)")
    return [int(j) for j in arr]


def level_major(importance: np.ndarray) -> list[int]:
    """The order from an (n - 1, M) importance table (higher = first); ties keep model order."""
    importance = np.asarray(importance, dtype=np.float64)
    out: list[int] = []
    for row in importance:
        key = np.where(np.isnan(row), -np.inf, row)
        out.extend(int(j) for j in np.argsort(-key, kind="stable"))
    return out


def uniform_order(n_matrices: int, n_blocks: int) -> list[int]:
    return list(range(n_matrices)) * max(n_blocks - 1, 0)


def error_order(errors: Sequence[np.ndarray], block_bytes: Sequence[int], n_blocks: int) -> list[int]:
    """Level-major order by error reduction per byte: for level b (1..n-1), matrix j scores
    (err_j[b] - err_j[b+1]) / block_bytes_j, where err_j[c] is its error with c blocks."""
    m = len(errors)
    if n_blocks <= 1 or m == 0:
        return []
    table = np.empty((n_blocks - 1, m), dtype=np.float64)
    for j, (err, nbytes) in enumerate(zip(errors, block_bytes)):
        err = np.asarray(err, dtype=np.float64)
        if err.shape != (n_blocks + 1,):
            raise BitpackError(f"matrix {j}: {err.size} error values, expected {n_blocks + 1} (0..n blocks)")
        table[:, j] = (err[1:n_blocks] - err[2:]) / float(nbytes)
    return level_major(table)


def ppl_order(ppl: np.ndarray) -> list[int]:
    """Order from the (n - 1, M) perplexity table of §4.2, lowest first within a level.

    NaN rule (§4.3, ``sort_layers_and_bits_average``): levels are processed from the last
    down; a NaN at level b becomes that matrix's (already processed) value at level b + 1
    plus the largest non-NaN value of level b (0 when the level has none). A NaN in the last
    level is an error."""
    table = np.array(ppl, dtype=np.float64, copy=True)
    if table.ndim != 2:
        raise BitpackError("perplexity table must be (levels, matrices)")
    for b in reversed(range(table.shape[0])):
        row = table[b]
        nan = np.isnan(row)
        if not nan.any():
            continue
        if b == table.shape[0] - 1:
            j = int(np.flatnonzero(nan)[0])
            raise BitpackError(f"perplexity is NaN at the last level (matrix {j} with {b + 2} blocks); "
                               "the order cannot be decided (spec/bitstack.md §4.3)")
        finite = row[~nan]
        top = float(finite.max()) if finite.size else 0.0
        row[nan] = table[b + 1][nan] + top
    return level_major(-table)


# -- reconstructions at chosen block counts, and the cost of ppl scoring ----------------------------------------------


class Reconstructions:
    """Dense f32 reconstructions of each matrix at a block count, computed on demand and
    kept in one least-recently-used cache of at most ``max_bytes`` (default 1 GiB) across all
    matrices: level-by-level scoring reuses every matrix at b and b + 1 blocks, so a small
    model is reconstructed once per level, while a large one stays within the bound
    (evicted reconstructions are rebuilt from the blocks)."""

    def __init__(self, blocks_of: Callable[[str], tuple[list, tuple[int, int], np.ndarray | None]],
                 max_bytes: int = 1 << 30, mode: str = "f32") -> None:
        self._blocks_of = blocks_of  # name -> (blocks, shape, act_scale)
        self._max_bytes = max_bytes
        self._mode = mode
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, name: str, n: int) -> np.ndarray:
        key = (name, n)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        blocks, shape, act_scale = self._blocks_of(name)
        if not 1 <= n <= len(blocks):
            raise BitpackError(f"{name}: {n} blocks asked for, {len(blocks)} available")
        w = reconstruct(blocks[:n], shape, act_scale, mode=self._mode)
        self._cache[key] = w
        self._bytes += w.nbytes
        while self._bytes > self._max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.nbytes
        return w


def ppl_passes(n_matrices: int, n_blocks: int) -> int:
    """Forward evaluations ``score_ppl`` runs: (n - 1)·M, plus one with every block (the
    reference's original_ppl)."""
    return n_steps(n_matrices, n_blocks) + 1


def check_ppl_cost(n_matrices: int, n_blocks: int, max_passes: int | None) -> int:
    passes = ppl_passes(n_matrices, n_blocks)
    if max_passes is not None and passes > max_passes:
        raise BitpackError(f"--order ppl would run {passes} perplexity evaluations ((n - 1) x M + 1 = "
                           f"{n_blocks - 1} x {n_matrices} + 1), above the limit of {max_passes}; use --order output "
                           "(the same calibration data, no extra passes) or raise the limit explicitly")
    return passes


def reduced_ppl_json(matrices: Sequence[str], keys: Mapping[str, str], scored: dict[str, Any]) -> dict[str, Any]:
    """The reference's reduced_ppl_average.json (spec §5.1)."""
    return {"original_ppl": scored["original_ppl"],
            "reduced_ppl": [{"bit": b + 1, "ppls": [{"layer": keys[name], "ppl": float(row[j])}
                                                    for j, name in enumerate(matrices)]}
                            for b, row in enumerate(scored["ppl"])]}
