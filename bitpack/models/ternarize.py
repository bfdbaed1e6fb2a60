"""Absmean ternarization of full-precision master weights (spec/checkpoints.md §2).

    a   = mean |W|                 (float32, pairwise summation)
    s_q = 1 / max(a, 1e-5)         (float32)
    t   = clamp(rint(W * s_q), -1, 1)
    s   = 1 / s_q                  (float32; the canonical scale, W ~ s * t)

How it is computed without ever widening the tensor to float32 as a whole:

* The sum is NumPy's own pairwise summation, reproduced exactly: NumPy splits n elements
  at n/2 rounded down to a multiple of 8 and recurses; splitting the same way down to
  chunks and letting NumPy reduce each chunk gives the bit-identical float32 sum while
  only one chunk is ever widened.
* rint rounds half to even, so t = +1 exactly when fl(W * s_q) > 0.5 (and -1 when
  fl(W * s_q) < -0.5). Rounded multiplication is monotonic in W, so that holds exactly
  when |W| >= T, the smallest float32 with fl(T * s_q) > 0.5; on the stored grid (bf16,
  f16 or f32 bits, which order like their magnitudes) that is one integer comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BitpackError

ABSMEAN_FLOOR = np.float32(1e-5)  # s_q = 1 / max(mean|W|, 1e-5): an all-zero tensor stays finite
CHUNK = 1 << 18  # elements widened at a time; small enough to stay in cache
BORDER = np.float32(2.0**-20)  # |x| this close to 0.5 or 1.5 may round differently elsewhere

# Stored float formats: (bits dtype, sign bit, shift from these bits to float32 bits).
# F16 is not a truncated float32, so it widens through NumPy instead (shift None).
FORMATS = {
    "BF16": (np.uint16, 0x8000, 16),
    "F32": (np.uint32, 0x80000000, 0),
    "F16": (np.uint16, 0x8000, None),
}


@dataclass
class Ternarized:
    codes: np.ndarray  # int8, same shape as the input
    scale: np.float32
    borderline: int  # elements within 2**-20 of a rounding boundary (-1 when not counted)


def absmean(w: np.ndarray, *, count_borderline: bool = True) -> Ternarized:
    """Ternarize a float array (any float dtype whose values float32 holds exactly)."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    return absmean_stored(w.view(np.uint32), "F32", count_borderline=count_borderline)


def mean_abs(bits: np.ndarray, stored: str) -> np.float32:
    """mean |W| exactly as np.mean(np.abs(W32), dtype=float32) computes it."""
    flat = bits.reshape(-1)
    return np.float32(_pairwise(flat, stored) / np.float32(flat.size)) if flat.size else np.float32(0)


def absmean_scale(bits: np.ndarray, stored: str, memo: dict | None = None) -> np.float32:
    """The canonical scale f32(1 / s_q) alone: one pass, no codes. ``memo`` keeps mean|W| for a
    later absmean_stored of the same tensor (a master is read for its scale, then its codes)."""
    a = mean_abs(bits.reshape(-1).view(FORMATS[stored][0]), stored)
    if memo is not None:
        memo["mean"] = a
    return np.float32(1) / (np.float32(1) / max(a, ABSMEAN_FLOOR))


def absmean_stored(bits: np.ndarray, stored: str, *, count_borderline: bool = False,
                   memo: dict | None = None) -> Ternarized:
    """Ternarize weights given as their stored bits: uint16 for BF16/F16, uint32 for F32.
    ``memo``: mean|W| of this tensor computed before (absmean_scale) or kept for the next call,
    so a tensor loaded twice (verify compares, then runs) takes the full-precision pass once."""
    if stored not in FORMATS:
        raise BitpackError(f"cannot ternarize {stored} weights (supported: {', '.join(FORMATS)})")
    word, sign, _ = FORMATS[stored]
    flat = bits.reshape(-1).view(word)
    a = memo["mean"] if memo is not None and "mean" in memo else mean_abs(flat, stored)
    if memo is not None:
        memo["mean"] = a
    if not np.isfinite(a):
        raise BitpackError("master weights hold NaN or infinite values; they cannot be ternarized")
    s_q = np.float32(1) / max(a, ABSMEAN_FLOOR)
    threshold = word(_grid_bits(_smallest_above_half(s_q), stored))
    codes = np.empty(flat.size, dtype=np.int8)
    # Read as signed integers, positive floats keep their order and negative ones are below
    # zero, so "W >= T" is one comparison; read as unsigned, a negative float is its sign bit
    # plus its magnitude, so "W <= -T" is one comparison too.
    signed = flat.view(np.int16 if word is np.uint16 else np.int32)
    low = signed.dtype.type(threshold)
    high = word(sign + int(threshold))
    for lo in range(0, flat.size, CHUNK):
        plus = signed[lo : lo + CHUNK] >= low
        minus = flat[lo : lo + CHUNK] >= high
        np.subtract(plus.view(np.int8), minus.view(np.int8), out=codes[lo : lo + plus.size])
    borderline = _borderline(flat, stored, s_q) if count_borderline else -1
    return Ternarized(codes.reshape(bits.shape), np.float32(1) / s_q, borderline)


def _widen_abs(chunk: np.ndarray, stored: str) -> np.ndarray:
    word, sign, shift = FORMATS[stored]
    magnitude = chunk & word(sign - 1)
    if shift is None:
        return magnitude.view(np.float16).astype(np.float32)
    if shift:
        return (magnitude.astype(np.uint32) << np.uint32(shift)).view(np.float32)
    return magnitude.view(np.float32)


def _pairwise(flat: np.ndarray, stored: str) -> np.float32:
    """NumPy's float32 pairwise sum of |flat|, split exactly where NumPy splits."""
    n = flat.size
    if n <= CHUNK:
        return np.add.reduce(_widen_abs(flat, stored), dtype=np.float32)
    half = n // 2
    half -= half % 8
    return np.float32(_pairwise(flat[:half], stored) + _pairwise(flat[half:], stored))


def _smallest_above_half(s_q: np.float32) -> np.float32:
    """The smallest float32 T > 0 with fl(T * s_q) > 0.5."""
    t = np.float32(np.float32(0.5) / s_q)
    half = np.float32(0.5)
    while np.float32(t * s_q) > half:
        t = np.nextafter(t, np.float32(0))
    while np.float32(t * s_q) <= half:
        t = np.nextafter(t, np.float32(np.inf))
    return t


def _grid_bits(t: np.float32, stored: str) -> int:
    """Bits of the smallest value >= t that the stored format can hold (t > 0)."""
    bits = int(np.array([t], dtype=np.float32).view(np.uint32)[0])
    if stored == "F32":
        return bits
    if stored == "BF16":
        return (bits >> 16) + (1 if bits & 0xFFFF else 0)
    f16 = np.float16(t)
    if np.float32(f16) < t:
        f16 = np.nextafter(f16, np.float16(np.inf))
    return int(np.array([f16]).view(np.uint16)[0])


def _borderline(flat: np.ndarray, stored: str, s_q: np.float32) -> int:
    count = 0
    for lo in range(0, flat.size, CHUNK):
        x = _widen_abs(flat[lo : lo + CHUNK], stored)
        x *= s_q
        count += int(np.count_nonzero(np.abs(x - np.float32(0.5)) < BORDER))
        count += int(np.count_nonzero(np.abs(x - np.float32(1.5)) < BORDER))
    return count
