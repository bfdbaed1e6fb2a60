"""Absmean ternarization of full-precision master weights (spec/checkpoints.md §2).

    a   = mean |W|                 (float32, pairwise summation)
    s_q = 1 / max(a, 1e-5)         (float32)
    t   = clamp(rint(W * s_q), -1, 1)
    s   = 1 / s_q                  (float32; the canonical scale, W ~ s * t)

rint rounds half to even, so W*s_q = +-0.5 gives 0 and +-1.5 gives +-2 -> +-1; that is
exactly t = (x > 0.5) - (x < -0.5) for x = W*s_q, which needs no rounding pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BORDER = np.float32(2.0**-20)  # |x| this close to 0.5 or 1.5 may round differently elsewhere


@dataclass
class Ternarized:
    codes: np.ndarray  # int8, same shape as the input
    scale: np.float32
    borderline: int  # elements within 2**-20 of a rounding boundary


def absmean(w: np.ndarray) -> Ternarized:
    w = np.asarray(w, dtype=np.float32)
    work = np.abs(w)
    a = np.float32(work.mean(dtype=np.float32))
    s_q = np.float32(1) / max(a, np.float32(1e-5))
    np.multiply(w, s_q, out=work)  # x = W * s_q, rounded to float32 as the reference does
    codes = (work > np.float32(0.5)).view(np.int8) - (work < np.float32(-0.5)).view(np.int8)
    np.abs(work, out=work)
    borderline = int(
        np.count_nonzero(np.abs(work - np.float32(0.5)) < BORDER)
        + np.count_nonzero(np.abs(work - np.float32(1.5)) < BORDER)
    )
    return Ternarized(codes, np.float32(1) / s_q, borderline)
