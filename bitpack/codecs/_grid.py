"""Float weights that lie exactly on a ternary grid (qwen3.md §8.3; formats-2026.md §7.2).

Ternary Bonsai ships its weights a second time as ordinary floats -- an F16 GGUF and an HF
"-unpacked" checkpoint -- whose every value is s_g x t. Such a tensor is ternary when every
group of the finest standard width (32 weights along a row; the whole row when K is not a
multiple of 32) holds only {-s, 0, +s} for one s; its scale is then reported at the
coarsest granularity that holds it (per tensor, row, or group of 256/128/64/32). Nothing is
rounded and nothing is guessed from statistics: one value off the grid and the tensor is float.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._scales import GROUP_WIDTHS, coarsest, unit

FINEST = GROUP_WIDTHS[-1]
ROWS = 1024  # rows widened to float32 at a time


class OffGrid(Exception):
    """A tensor with a group holding more than one nonzero magnitude (or a non-finite value)."""

    def __init__(self, row: int, group: int, width: int, magnitudes: list[float]) -> None:
        self.row, self.group, self.width, self.magnitudes = row, group, width, magnitudes
        shown = ", ".join(f"{m:.6g}" for m in magnitudes[:3])
        super().__init__(f"row {row}, {unit('group', width) if width else 'the row'} {group} holds "
                         f"{len(magnitudes)} different nonzero magnitudes ({shown}{', ...' if len(magnitudes) > 3 else ''})")


def grid_width(k: int) -> int:
    return FINEST if k % FINEST == 0 else k


def on_grid(values: np.ndarray) -> tuple[np.ndarray, Any]:
    """(int8 codes, scale at the coarsest granularity) of float values [M, K] (any float dtype
    that widens to float32 exactly) that lie on a ternary grid; OffGrid naming the first group
    that does not."""
    m, k = values.shape
    width = grid_width(k)
    codes = np.empty((m, k), dtype=np.int8)
    scale = np.empty((m, k // width), dtype=np.float32)
    for lo in range(0, m, ROWS):
        w = np.asarray(values[lo : lo + ROWS], dtype=np.float32).reshape(-1, k // width, width)
        a = np.abs(w)
        top = a.max(axis=-1)
        bad = ~((a == 0) | (a == top[..., None])).all(axis=-1) | ~np.isfinite(top)
        if bad.any():
            r, g = map(int, np.argwhere(bad)[0])
            mags = np.unique(a[r, g][a[r, g] != 0]).tolist()
            raise OffGrid(lo + r, g, width if width != k else 0, mags)
        np.sign(w, out=w)
        codes[lo : lo + ROWS] = w.reshape(-1, k).astype(np.int8)
        scale[lo : lo + ROWS] = top + np.float32(0)  # -0 -> +0
    return codes, coarsest(scale, codes)
