"""Hadamard-folded weights (qwen3.md §9; PrismML's Bonsai 2 contract, ``prism.hadamard.*``).

A folded weight stores W' = W·diag(s_K)·H_K, so the runtime computes x' = H_K(s_K ⊙ x) before
the matmul (y = W'·x' = W·x); a latent table stores rows z = H_H(s_H ⊙ e) and the runtime
restores e = s_H ⊙ (H_H·z) after the lookup. H_K is the normalised Sylvester-Walsh-Hadamard
matrix of the block size n, repeated along K (symmetric and orthogonal: H⁻¹ = H). A tied head
that multiplies by a latent table computes z·eᵀ = (H(s ⊙ z))·zᵀ: the same input transform.

Only the contract of §9.1 is run; any other value, or a key this module does not know, is
refused by name, so a file is never run under a contract bitpack does not understand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BitpackError

PREFIX = "prism.hadamard."
FIXED = {"version": 1, "transform": "normalized-sylvester-walsh-hadamard", "axis": "input-last-dimension"}
KNOWN = {*FIXED, "block_size", "sign_mode", "weight_names", "inverse_weight_names", "sign_widths",
         "sign_values", "gdn_v_grouped"}


@dataclass(frozen=True)
class Rotation:
    block: int  # n: the Hadamard block along K
    signs: dict[int, np.ndarray]  # input width K -> s_K (float32 of +-1); identity mode: all +1
    folded: frozenset[str]  # weights stored W·diag(s)·H: their input is transformed
    latent: frozenset[str]  # tables stored as H(s ⊙ e): rows restored after the lookup

    def signs_for(self, width: int) -> np.ndarray:
        return self.signs.get(width, np.ones(width, dtype=np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """H_K(s_K ⊙ x) along the last axis (float32); its own inverse up to the signs."""
        return hadamard(x * self.signs_for(x.shape[-1]), self.block)

    def restore(self, z: np.ndarray) -> np.ndarray:
        """s_K ⊙ (H_K·z): a latent table's rows back to the embedding."""
        return (hadamard(z, self.block) * self.signs_for(z.shape[-1])).astype(np.float32)


def hadamard(x: np.ndarray, n: int) -> np.ndarray:
    """Blockwise normalised fast Walsh-Hadamard transform along the last axis, in float64 and
    rounded once to float32 (Sylvester order: H[i][j] = (-1)^popcount(i & j) / sqrt(n))."""
    k = x.shape[-1]
    y = np.asarray(x, dtype=np.float64).reshape(-1, k // n, n).copy()
    h = 1
    while h < n:
        y = y.reshape(y.shape[0], k // n, n // (2 * h), 2, h)
        a, b = y[:, :, :, 0, :].copy(), y[:, :, :, 1, :]
        y[:, :, :, 0, :] += b
        y[:, :, :, 1, :] = a - b
        h *= 2
    return (y.reshape(x.shape) / np.sqrt(n)).astype(np.float32)


def read_rotation(kv: dict[str, Any], widths: dict[str, int], where: str) -> Rotation | None:
    """The contract of a file's ``prism.hadamard.*`` keys, checked against its tensors
    (``widths``: each tensor's input width K; every listed name must be one, and the block must
    divide its width), or None without them."""
    keys = {k[len(PREFIX):]: v for k, v in kv.items() if k.startswith(PREFIX)}
    if not keys:
        return None
    unknown = sorted(set(keys) - KNOWN)
    if unknown:
        raise BitpackError(f"{where}: key {PREFIX}{unknown[0]} is not part of the rotation contract bitpack runs")
    for key, value in FIXED.items():
        if keys.get(key) != value:
            raise BitpackError(f"{where}: {PREFIX}{key} is {keys.get(key)!r}; bitpack runs {value!r} only")
    if keys.get("gdn_v_grouped"):
        raise BitpackError(f"{where}: {PREFIX}gdn_v_grouped is set: a qwen35 contract, not one for this graph")
    block = keys.get("block_size")
    if not isinstance(block, int) or isinstance(block, bool) or block < 1 or block & (block - 1) or block > 1 << 16:
        raise BitpackError(f"{where}: {PREFIX}block_size is {block!r}; expected a power of two")
    folded, latent = _names(keys, "weight_names", where), _names(keys, "inverse_weight_names", where)
    missing = sorted((folded | latent) - set(widths))
    if missing:
        raise BitpackError(f"{where}: {PREFIX}weight_names lists {missing[0]}, which the file does not hold")
    bad = sorted(widths[n] for n in folded | latent if widths[n] % block)
    if bad:
        raise BitpackError(f"{where}: {PREFIX}block_size {block} does not divide the input width {bad[0]}")
    return Rotation(block, _signs(keys, where), frozenset(folded), frozenset(latent))


def _names(keys: dict[str, Any], key: str, where: str) -> set[str]:
    value = keys.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BitpackError(f"{where}: {PREFIX}{key} must be an array of tensor names")
    return set(value)


def _signs(keys: dict[str, Any], where: str) -> dict[int, np.ndarray]:
    mode = keys.get("sign_mode", "identity")
    if mode == "identity":
        return {}
    if mode != "explicit":
        raise BitpackError(f"{where}: {PREFIX}sign_mode is {mode!r}; bitpack runs 'explicit' and 'identity'")
    widths = [int(w) for w in np.asarray(keys.get("sign_widths", [])).reshape(-1)]
    values = np.asarray(keys.get("sign_values", []), dtype=np.int64).reshape(-1)
    if any(w <= 0 for w in widths) or sum(widths) != values.size or not np.isin(values, (-1, 1)).all():
        raise BitpackError(f"{where}: {PREFIX}sign_values must hold sum(sign_widths) = {sum(widths)} values of "
                           f"+-1; it holds {values.size}")
    out, at = {}, 0
    for w in widths:
        out[w] = values[at : at + w].astype(np.float32)
        at += w
    return out
