"""``int8`` ("I2 naive"): one int8 per weight, values -1, 0, +1 (formats/int8.md)."""

from __future__ import annotations

import numpy as np

from ..errors import CorruptDataError
from ._bits import codes_to_ternary
from .base import SafetensorsCodec, Shape


class Int8(SafetensorsCodec):
    name = "int8"
    any_scale = True  # weight_scale per tensor, row or group (formats/hf_checkpoint.md)
    aliases = ("i2_naive",)
    spec = "formats/int8.md"
    bits_text = "8"
    runtime = "bitpack; any reader of I8 safetensors sees the raw values"
    constraints = "none"
    stored_dtype = np.dtype(np.int8)
    zero_byte = 0x00

    def stored_shape(self, shape: Shape) -> tuple[int, int]:
        return tuple(shape)

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        return codes_to_ternary(codes)

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, None]:
        c = data + np.uint8(1)
        if c.max() > 2:
            at = int(np.argmax(c > 2))
            raise CorruptDataError(
                f"int8 data holds {int(data.view(np.int8)[at])} at element {at}; "
                "only -1, 0 and +1 are ternary"
            )
        return codes_to_ternary(c).reshape(shape), None
