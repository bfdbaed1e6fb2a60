"""``iq2_bn_r4``: ik_llama.cpp IQ2_BN_R4, GGML type 335 (formats/iq2_bn.md, "IQ2_BN_R4").

IQ2_BN interleaved over groups of 4 rows (M % 4 == 0): each group is the 4 rows' f32
scales, then for every 64-column block ib 64 bytes, where byte 16l + 4k + i holds in bits
2m the code of row k at column 64ib + 16l + 4m + i. Same size as IQ2_BN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._bits import codes_to_ternary, pack_pairs, unpack_pair
from ._bn import QK, BNCodec
from .base import Shape, require

_SHIFTS = (0, 2, 4, 6)  # m = 0..3
# decoded planes (m, group, ib, l, k) of uint32 words of 4 columns i -> (group, row k, ib, l, m)
_FROM_PLANES = (1, 4, 2, 3, 0)


class IQ2_BN_R4(BNCodec):  # noqa: N801 - named after the GGML type
    name = "iq2_bn_r4"
    spec = "formats/iq2_bn.md"
    bits_text = "2 + 32/K"
    constraints = "K % 64 == 0, M % 4 == 0"
    runtime = "ik_llama.cpp (CPU only)"
    scale_dtype = "f32"
    block_bytes = 16
    type_ids = {"ik-llama": 335}
    file_types = {"ik-llama": 337}  # LLAMA_FTYPE_MOSTLY_IQ2_BN_R4

    def _check(self, m: int, k: int) -> None:
        super()._check(m, k)
        require(m % 4 == 0, self.name, (m, k), f"M = {m} is not a multiple of 4 (rows are interleaved in fours)")

    def _layout(self, codes: np.ndarray, s: np.ndarray, shape: Shape) -> np.ndarray:
        m, k = shape
        g, nb = m // 4, k // QK
        # Pack in the codes' own order (group, row k, ib, l) -- each plane m is one evenly
        # strided run -- then move the packed words (a quarter of the data) into (group, ib, l, k).
        words = codes.reshape(-1).view(np.uint32).reshape(g, 4, nb, 4, 4)
        packed = np.empty((g, 4, nb, 4), dtype=np.uint32)
        pack_pairs([words[..., i] for i in range(4)], _SHIFTS, packed)
        out = np.empty((g, 4 * self.row_nbytes(k)), dtype=np.uint8)
        out[:, :16] = s.astype("<f4").view(np.uint8).reshape(g, 16)
        out[:, 16:].view(np.uint32).reshape(g, nb, 4, 4)[...] = packed.transpose(0, 2, 3, 1)
        return out.reshape(-1)

    def _unlayout(self, data: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, Any]:
        m, k = shape
        g, nb = m // 4, k // QK
        group = 4 * self.row_nbytes(k)
        groups = data.reshape(g, group)
        qs = np.ascontiguousarray(groups[:, 16:])
        self._refuse_code3(qs, lambda at: (at // (group - 16)) * group + 16 + at % (group - 16))
        words = qs.reshape(-1).view(np.uint64)
        planes = np.empty((4, words.size), dtype=np.uint64)
        for n, shift in enumerate(_SHIFTS):
            unpack_pair(words, shift, planes[n])
        c = planes.view(np.uint32).reshape(4, g, nb, 4, 4).transpose(_FROM_PLANES)
        t = codes_to_ternary(np.ascontiguousarray(c).view(np.uint8)).reshape(m, k)
        s = np.ascontiguousarray(groups[:, :16]).view("<f4").reshape(m)
        return t, s, lambda r: (r // 4) * group + 4 * (r % 4)
