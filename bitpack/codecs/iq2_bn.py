"""``iq2_bn``: ik_llama.cpp IQ2_BN, GGML type 135 (formats/iq2_bn.md).

Each row is its f32 scale, then K/64 blocks of 16 bytes; byte j of a block holds weights
j, j+16, j+32, j+48, the first in the LEAST significant bit pair (TQ2_0's order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._bits import codes_to_ternary, pack_pairs, unpack_pair
from ._bn import QK, BNCodec
from .base import Shape

_SHIFTS = (0, 2, 4, 6)  # weight j + 16l at bits 2l of byte j


def pack_blocks(blocks: np.ndarray) -> np.ndarray:
    """uint8 codes (n, 64) -> IQ2_BN block bytes (n, 16)."""
    # Group l of every block, as one long run: (l, block) 16-byte units, then plain words.
    # (Shifting the (block, l, 2 words) view directly runs NumPy loops of two words.)
    planes = np.ascontiguousarray(blocks.reshape(-1).view("V16").reshape(-1, 4).T).view(np.uint64)
    qs = np.empty((blocks.shape[0], 16), dtype=np.uint8)
    pack_pairs([planes[n] for n in range(4)], _SHIFTS, qs.reshape(-1).view(np.uint64))
    return qs


def unpack_blocks(qs: np.ndarray) -> np.ndarray:
    """IQ2_BN block bytes (n, 16), contiguous and checked -> uint8 codes (n, 64)."""
    words = qs.reshape(-1).view(np.uint64)
    planes = np.empty((4, words.size), dtype=np.uint64)  # (l, every block's 2 words)
    for n, shift in enumerate(_SHIFTS):
        unpack_pair(words, shift, planes[n])
    return np.ascontiguousarray(planes.view("V16").T).view(np.uint8).reshape(-1, 64)


class IQ2_BN(BNCodec):  # noqa: N801 - named after the GGML type
    name = "iq2_bn"
    spec = "formats/iq2_bn.md"
    bits_text = "2 + 32/K"
    constraints = "K % 64 == 0"
    scale_dtype = "f32"
    block_bytes = 16
    type_ids = {"ik-llama": 135}
    file_types = {"ik-llama": 137}  # LLAMA_FTYPE_MOSTLY_IQ2_BN

    def _layout(self, codes: np.ndarray, s: np.ndarray, shape: Shape) -> np.ndarray:
        m, k = shape
        out = np.empty((m, self.row_nbytes(k)), dtype=np.uint8)
        out[:, :4] = s.astype("<f4").view(np.uint8).reshape(m, 4)
        out[:, 4:] = pack_blocks(codes.reshape(-1, QK)).reshape(m, -1)
        return out.reshape(-1)

    def _unlayout(self, data: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, Any]:
        m, k = shape
        row = self.row_nbytes(k)
        rows = data.reshape(m, row)
        qs = np.ascontiguousarray(rows[:, 4:])
        self._refuse_code3(qs, lambda at: (at // (row - 4)) * row + 4 + at % (row - 4))
        t = codes_to_ternary(unpack_blocks(qs.reshape(-1, 16))).reshape(m, k)
        s = np.ascontiguousarray(rows[:, :4]).view("<f4").reshape(m)
        return t, s, lambda r: r * row
