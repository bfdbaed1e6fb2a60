"""``hf_packed``: transformers' BitNet layout, uint8 [M/4, K]; bit pair i of byte [r, k]
holds row i*M/4 + r of column k (formats/hf_packed.md).

The codec stores codes only. What ``weight_scale`` means (multiply for
``autobitlinear``, divide for ``bitlinear``) is resolved when a checkpoint is read.
"""

from __future__ import annotations

import numpy as np

from ._bits import codes_to_ternary, lanes, pack_pairs, refuse_code3, unpack_pair
from .base import SafetensorsCodec, Shape, require

_SHIFTS = (0, 2, 4, 6)  # row quarter i goes to bits 2i, 2i+1


class HFPacked(SafetensorsCodec):
    name = "hf_packed"
    spec = "formats/hf_packed.md"
    bits_text = "2"
    runtime = "transformers (quant_method: bitnet), mlx-lm"
    constraints = "M % 4 == 0"
    stored_dtype = np.dtype(np.uint8)
    zero_byte = 0x55  # four codes 1: an all-zero weight (the corrupted 2B-4T revisions)

    def _check(self, m: int, k: int) -> None:
        require(m % 4 == 0, self.name, (m, k), f"M = {m} is not a multiple of 4")

    def stored_shape(self, shape: Shape) -> tuple[int, int]:
        return shape[0] // 4, shape[1]

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        quarters = lanes(codes.reshape(4, m // 4 * k))
        out = np.empty((m // 4, k), dtype=np.uint8)
        pack_pairs(list(quarters), _SHIFTS, lanes(out.reshape(-1)))
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, None]:
        m, k = shape
        words = lanes(data)
        refuse_code3(words, self.name)
        c = np.empty((4, data.size), dtype=np.uint8)
        for quarter, shift in zip(lanes(c), _SHIFTS, strict=True):
            unpack_pair(words, shift, quarter)
        return codes_to_ternary(c).reshape(m, k), None
