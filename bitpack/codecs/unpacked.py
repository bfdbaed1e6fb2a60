"""``unpacked``: ternary weights stored as the floats they are, s x t in F16, BF16 or F32
(formats/unpacked.md; qwen3.md §8.3). What PrismML publishes as "-unpacked": transformers
loads it as an ordinary model, and bitpack reads it back as ternary because every group of
32 weights along a row holds {-s, 0, +s} for one s (codecs/_grid.py).

Only weight-only graphs (qwen3) may be written this way: BitNet runtimes re-ternarize float
weights online with their own absmean, which would not give these codes back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CodecError, CorruptDataError
from ._grid import FINEST, OffGrid, on_grid
from ._scales import to_codec_scales
from .base import Codec, SafetensorsCodec, Shape, require

DTYPES = {"f16": np.dtype("<f2"), "bf16": np.dtype("<u2"), "f32": np.dtype("<f4")}
SAFETENSORS_NAMES = {"f16": "F16", "bf16": "BF16", "f32": "F32"}


class Unpacked(SafetensorsCodec):
    name = "unpacked"
    spec = "formats/unpacked.md"
    runtime = "transformers (Qwen3ForCausalLM as an ordinary float model); any reader of float safetensors"
    constraints = "K % 32 == 0"
    bits_text = "16 (f16, bf16) or 32 (f32)"
    lossless_scale = "when every scale is representable in the dtype"
    param_names = ("dtype",)
    scale_granularity, group_size = "group", FINEST  # any coarser scale spreads over these groups
    floats = True  # the stored tensor holds the weights' values: no separate weight_scale tensor

    def __init__(self, dtype: str = "f16") -> None:
        if dtype not in DTYPES:
            raise CodecError(f"unpacked dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        super().__init__(dtype=dtype)
        self.dtype = dtype
        self.scale_dtype = dtype
        self.stored_dtype = DTYPES[dtype]

    def _check(self, m: int, k: int) -> None:
        require(k % FINEST == 0, self.name, (m, k), f"K = {k} is not a multiple of {FINEST}")

    def row_bytes(self, k: int) -> int | None:
        return k * self.stored_dtype.itemsize if k % FINEST == 0 else None

    def stored_shape(self, shape: Shape) -> tuple[int, int]:
        return tuple(shape)

    def _encode_scale(self, scale: Any, shape: Shape) -> Any:
        return scale  # brought to per-32 groups in _encode, where the codes are known

    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        m, k = shape
        if not (isinstance(scale, np.ndarray) and scale.shape == (m, k // FINEST)):
            scale = to_codec_scales(scale, codes, "group", FINEST, self.dtype, self.name)  # exact, or refused
        t = codes.astype(np.float32) - np.float32(1)
        values = (t.reshape(m, -1, FINEST) * scale[:, :, None]).reshape(m, k)  # exact in the dtype
        if self.dtype == "bf16":
            return (values.view(np.uint32) >> np.uint32(16)).astype("<u2").view(np.uint8).reshape(-1)
        return values.astype(self.stored_dtype).view(np.uint8).reshape(-1)

    def decode(self, buf: Any, shape: Shape, scale: Any = None) -> tuple[np.ndarray, Any]:
        """(codes, scale at the coarsest granularity): the values hold both, no weight_scale tensor."""
        return Codec.decode(self, buf, shape)

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, Any]:
        raw = data.view(self.stored_dtype).reshape(shape)
        values = (raw.astype(np.uint32) << np.uint32(16)).view(np.float32) if self.dtype == "bf16" else raw
        try:
            return on_grid(values)
        except OffGrid as err:
            raise CorruptDataError(f"unpacked weights are not ternary: {err}") from None
