"""Full-precision tensors between F32, F16 and BF16, chunk by chunk.

Only one chunk is ever widened to float32, so a 128256 x 2560 embedding costs its output
plus a few megabytes, not three float32 copies. Rounding to BF16 is round-to-nearest-even,
as every converter does; callers decide whether rounding is allowed and report it.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import (
    FLOAT_STORAGE as STORAGE,  # re-exported: the models' name for the one table
)
from .model import Float, Ternary

CHUNK = 1 << 20


def _chunks(f: Float):
    flat = f.raw.reshape(-1)
    for lo in range(0, flat.size, CHUNK):
        yield lo, Float(flat[lo : lo + CHUNK], f.stored).values


def round_to(values: np.ndarray, target: str) -> np.ndarray:
    """float32 ``values`` in ``target``'s storage, rounded to nearest even where needed."""
    if target == "F32":
        return values.astype("<f4", copy=False)
    if target == "F16":
        with np.errstate(over="ignore"):  # overflow to inf counts as a changed value
            return values.astype("<f2")
    bits = values.view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")


def round_through(values: np.ndarray, target: str) -> np.ndarray:
    """float32 ``values`` rounded as storing them in ``target`` (F16, BF16) would, still float32."""
    if target == "F32":
        return values
    return Float(round_to(np.ascontiguousarray(values, dtype=np.float32), target), target).values


def rounded_count(f: Float, target: str) -> int:
    """How many values change when ``f`` is stored as ``target``."""
    if f.stored == target or target == "F32":  # every stored format widens to F32 exactly
        return 0
    changed = 0
    for _, values in _chunks(f):
        back = round_through(values, target)
        changed += int(np.count_nonzero(back != values))
    return changed


# bfloat16 magnitudes (bits without the sign) that float16 holds as normal numbers:
# 2**-14 .. 65280 (bf16's 8-bit significand always fits f16's 11 bits in that range).
BF16_IN_F16_NORMAL = (0x3880, 0x477F)


def exact_in(f: Float, target: str) -> bool:
    """Whether every value of ``f`` survives storage as ``target``; stops at the first that
    does not. BF16 -> F16 is decided on the bits, with exact checks only for the rare
    values in f16's subnormal range."""
    if f.stored == target or target == "F32":
        return True
    flat = f.raw.reshape(-1)
    lo_normal, hi_normal = BF16_IN_F16_NORMAL
    for lo in range(0, flat.size, CHUNK):
        if f.stored == "BF16" and target == "F16":
            magnitude = flat[lo : lo + CHUNK] & np.uint16(0x7FFF)
            if magnitude.max(initial=0) > hi_normal:
                return False
            small = (magnitude < lo_normal) & (magnitude != 0)
            if not small.any():
                continue
            values = Float(flat[lo : lo + CHUNK][small], "BF16").values
        else:
            values = Float(flat[lo : lo + CHUNK], f.stored).values
        if (round_through(values, target) != values).any():
            return False
    return True


def stored_as(f: Float, target: str) -> np.ndarray:
    """``f`` in ``target``'s storage (float32, float16, or bfloat16 bits), same shape."""
    if f.stored == target:
        return f.raw
    out = np.empty(f.raw.size, dtype=STORAGE[target])
    for lo, values in _chunks(f):
        out[lo : lo + values.size] = round_to(values, target)
    return out.reshape(f.raw.shape)


def as_float(value: Float | Ternary) -> Float:
    """A tensor as floats: a ternary embedding or head (weight-only graphs) as its exact values
    s x t in float32, for a target that stores it as floats."""
    return Float(value.values, "F32") if isinstance(value, Ternary) else value
