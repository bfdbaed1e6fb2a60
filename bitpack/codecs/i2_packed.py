"""``i2_packed``: plain 2-bit packing, four consecutive weights of a row per byte,
first weight in the lowest bit pair; rows padded to a multiple of 4 with code 1
(formats/i2_packed.md)."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptDataError
from ._bits import codes_to_ternary, refuse_code3
from .base import SafetensorsCodec, Shape, pad

# Multiplying a uint32 holding codes c0..c3 (one per byte, little endian) by this
# gathers c0 + 4*c1 + 16*c2 + 64*c3 into the top byte; the partial sums in the lower
# bytes stay below 256, so nothing carries into it.
_GATHER = np.uint32(0x01041040)


def spread_pairs(b: np.ndarray) -> np.ndarray:
    """uint32 whose byte j is bit pair j of byte ``b`` (the inverse of the gather)."""
    x = b.astype(np.uint32)
    y = x | (x << np.uint32(6))
    y |= y << np.uint32(12)
    y &= np.uint32(0x03030303)
    return y


class I2Packed(SafetensorsCodec):
    name = "i2_packed"
    any_scale = True  # weight_scale per tensor, row or group (formats/hf_checkpoint.md)
    spec = "formats/i2_packed.md"
    bits_text = "2 (8·⌈K/4⌉/K when K % 4 != 0)"
    runtime = "bitpack"
    constraints = "none (rows padded to a multiple of 4)"
    stored_dtype = np.dtype(np.uint8)

    def stored_shape(self, shape: Shape) -> tuple[int, int]:
        return shape[0], pad(shape[1], 4) // 4

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        if k % 4:
            padded = np.ones((m, pad(k, 4)), dtype=np.uint8)  # code 1 = weight 0
            padded[:, :k] = codes
            codes = padded
        words = codes.view(np.uint32)
        return ((words * _GATHER) >> np.uint32(24)).astype(np.uint8)

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, None]:
        m, k = shape
        refuse_code3(data, self.name)
        c = spread_pairs(data).view(np.uint8).reshape(m, -1)
        if c.shape[1] != k:
            tail = c[:, k:]
            if (tail != 1).any():
                row = int(np.flatnonzero((tail != 1).any(axis=1))[0])
                raise CorruptDataError(
                    f"i2_packed row {row} has a non-zero weight in its padding "
                    f"(columns {k}..{c.shape[1] - 1} must hold code 1)"
                )
            c = np.ascontiguousarray(c[:, :k])
        return codes_to_ternary(c), None
