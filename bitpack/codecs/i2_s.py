"""``i2_s``: bitnet.cpp I2_S, GGML type 36 (formats/i2_s.md).

128-element blocks of the flattened tensor become 32 bytes; byte p of a block holds
elements p, p+32, p+64, p+96, the first in the most significant bit pair. After the
M*K/4 code bytes comes a 32-byte trailer: the f32 scale, then 28 zero bytes.
"""

from __future__ import annotations

import math

import numpy as np

from ._bits import (
    codes_to_ternary,
    f32_trailer,
    lanes,
    pack_pairs,
    read_f32_trailer,
    refuse_code3,
    unpack_pair,
)
from .base import GGUFCodec, Shape, require

BLOCK = 128
_SHIFTS = (6, 4, 2, 0)  # group g of 32 elements goes to bits 6-2g, 7-2g


class I2S(GGUFCodec):
    name = "i2_s"
    ggml_name = "I2_S"
    type_ids = {"bitnet-cpp-2026": 36, "bitnet-cpp-2024": 36}
    file_types = {"bitnet-cpp-2024": 40, "bitnet-cpp-2026": 41}
    spec = "formats/i2_s.md"
    bits_text = "2 + 256/(M·K)"
    runtime = "bitnet.cpp (x86 AVX2 builds), ik_llama.cpp"
    constraints = "K % 128 == 0 (M % 32 == 0 recommended)"

    def _check(self, m: int, k: int) -> None:
        # The kernels address row m at byte m*K/4 and read whole 128-element blocks,
        # so a block must never straddle two rows.
        require(k % BLOCK == 0, self.name, (m, k), f"K = {k} is not a multiple of {BLOCK}")

    zero_byte = 0x55  # four codes 1 (spec/codecs.md: "every data byte is 0x55")

    def nbytes(self, shape: Shape) -> int:
        return self.code_nbytes(shape) + 32

    @classmethod
    def type_nbytes(cls, shape: tuple[int, ...]) -> int:
        # The fork's patched ggml_nbytes: nelements / 4 + 32, whatever the shape (gguf.md §1.6)
        return math.prod(shape) // 4 + 32

    def code_nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * k // 4

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        packed = m * k // 4
        out = np.empty(packed + 32, dtype=np.uint8)
        groups = lanes(codes.reshape(-1, 4, 32))  # (block, group, 32 bytes as words)
        dest = lanes(out[:packed].reshape(-1, 32))
        pack_pairs([groups[:, g] for g in range(4)], _SHIFTS, dest)
        out[packed:] = f32_trailer(scale)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        m, k = shape
        packed = m * k // 4
        words = lanes(data[:packed].reshape(-1, 32))
        refuse_code3(words, self.name)
        c = np.empty((packed // 32, 4, 32), dtype=np.uint8)
        groups = lanes(c)
        for g, shift in enumerate(_SHIFTS):
            unpack_pair(words, shift, groups[:, g])
        return codes_to_ternary(c).reshape(m, k), read_f32_trailer(data, packed, self.name)
