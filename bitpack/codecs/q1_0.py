"""``q1_0``: mainline llama.cpp Q1_0, GGML type 41, **binary**, group 128 (formats/q1_0.md;
spec/formats-2026.md §1).

An 18-byte block is the f16 scale d, then 16 bytes of sign bits: weight j is bit j mod 8 of
byte j div 8, 1 = +d and 0 = -d. Zeros cannot be stored, so a group holds codes that are all
nonzero or all zero; the all-zero group is d = 0 with every bit 1, as the upstream quantizer
writes it. A group mixing zeros and nonzeros is refused: Q1_0 would change the weights.
"""

from __future__ import annotations

import numpy as np

from ..errors import CodecError
from ._bits import lanes, rows_any, ternary_to_codes
from ._group import GroupCodec
from .base import Shape

_ONES = np.uint64(0x0101010101010101)  # eight codes c = 1 (t = 0); c = 1 is the only odd code
# One byte of sign bits -> eight int8 values +-1 (bit 0 first), as one uint64.
_BITS = (np.arange(256)[:, None] >> np.arange(8)) & 1
_T_OF_BYTE = (2 * _BITS - 1).astype(np.int8).view(np.uint64).reshape(256)


class Q1_0(GroupCodec):  # noqa: N801 - named after the GGML type
    name = "q1_0"
    spec = "formats/q1_0.md"
    runtime = "llama.cpp (mainline), PrismML fork from prism-b8796, ik_llama.cpp (Q1_0_G128)"
    constraints = "K % 128 == 0; binary: no zero inside a group that has a nonzero"
    bits_text = "1.125"
    group_size = 128
    block_bytes = 18
    d_offset = 0
    type_ids = {"mainline": 41, "prism": 41, "prism-legacy": 41, "bitnet-cpp-2026": 41, "ik-llama": 41}
    file_types = {"mainline": 40, "prism": 40, "prism-legacy": 40, "bitnet-cpp-2026": 40, "ik-llama": 41}

    codes_restricted = True

    def check_codes(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes)
        self._check_groups(ternary_to_codes(codes), self.check(codes.shape))

    def _check_groups(self, codes: np.ndarray, shape: Shape) -> None:
        m, k = shape
        words = lanes(codes.reshape(-1, self.group_size))
        mixed = rows_any((words & _ONES) != 0) & rows_any(words != _ONES)  # a 0 and a nonzero
        if mixed.any():
            at = int(np.flatnonzero(mixed)[0])
            row, group = divmod(at, k // self.group_size)
            block = codes.reshape(-1, self.group_size)[at]
            first_zero = int(np.flatnonzero(block == 1)[0]) + group * self.group_size
            raise CodecError(
                f"{self.name} is binary and cannot store a zero inside a group that has nonzero "
                f"weights: row {row}, group {group} (columns {group * self.group_size}-"
                f"{(group + 1) * self.group_size - 1}) has a 0 at column {first_zero}; the upstream "
                "quantizer would turn it into +d and change the weights"
            )

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        return np.packbits(blocks, axis=1, bitorder="little")  # c = 0 -> 0; c = 2, and 1 (zero group) -> 1

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        return _T_OF_BYTE[qs].view(np.int8)  # every byte is valid
