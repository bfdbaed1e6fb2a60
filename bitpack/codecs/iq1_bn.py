"""``iq1_bn``: ik_llama.cpp IQ1_BN, GGML type 134 (formats/iq1_bn.md).

Each row is its f16 scale, then K/64 blocks of 13 bytes. In each 16-weight sub-group
i16 of a block, ``ql[3*i16 + k]`` packs weights 16*i16 + 5k + j (j = 0..4) and ``extra``
packs weight 16*i16 + 15 of the four sub-groups, both as base-3 numbers whose FIRST
weight is the LEAST significant digit (the reverse of TQ1_0), stored as ceil(256*v/243).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptDataError
from ._bits import lanes
from ._bn import QK, BNCodec
from .base import Shape
from .tq1_0 import ENCODE_V, VALID  # the base-3 byte packing ceil(256*v/243) TQ1_0 uses too

# Multiplying a word whose bytes are codes q0, q1, ... by this gathers q0 + 3*q1 + 9*q2 +
# 27*q3 + 81*q4 into byte 4. No lower byte exceeds 240, so nothing carries into it.
_SUM5 = np.uint64(81 | 27 << 8 | 9 << 16 | 3 << 24 | 1 << 32)
# The same for four codes (the extra byte) in a uint32: q0 + 3*q1 + 9*q2 + 27*q3 in byte 3.
_SUM4 = np.uint32(27 | 9 << 8 | 3 << 16 | 1 << 24)

_B = np.arange(256)
_K_MULT = 3 ** np.arange(4, -1, -1)  # ik's k_mult = {81, 27, 9, 3, 1}: digit j of a byte
_TRITS = (((_B[:, None] * _K_MULT) % 256) * 3) >> 8  # (byte, digit j), j = 0 least significant
VALID_EXTRA = VALID & (_TRITS[:, 4] == 0)  # extra holds four digits: the top one is 0
# byte -> its five ternary values t = digit - 1 as int8 bytes 0..4 of a uint64 (bytes 5..7 zero)
_T5 = (((_TRITS - 1).astype(np.int8).view(np.uint8).astype(np.uint64)) << (8 * np.arange(5, dtype=np.uint64))).sum(
    axis=1, dtype=np.uint64)
_T4 = np.ascontiguousarray((_TRITS[:, :4] - 1).astype(np.int8))  # extra byte -> four ternary values


def _byte(x: np.ndarray, shift: int) -> np.ndarray:
    """Byte 4 of x * _SUM5 after x >>= shift: the base-3 number of five codes, as uint8."""
    w = x >> np.uint64(shift) if shift else x.copy()
    w *= _SUM5
    w >>= np.uint64(32)
    return w.astype(np.uint8)


class IQ1_BN(BNCodec):  # noqa: N801 - named after the GGML type
    name = "iq1_bn"
    spec = "formats/iq1_bn.md"
    bits_text = "1.625 + 16/K"
    constraints = "K % 64 == 0"
    scale_dtype = "f16"
    lossless_scale = "per row, when every row scale is fp16-representable"
    block_bytes = 13
    type_ids = {"ik-llama": 134}
    file_types = {"ik-llama": 136}  # LLAMA_FTYPE_MOSTLY_IQ1_BN

    def _layout(self, codes: np.ndarray, s: np.ndarray, shape: Shape) -> np.ndarray:
        m, k = shape
        nb = k // QK
        # Sub-group r = 16 codes = two words: weights 0..7 and 8..15.
        words = codes.reshape(-1).view(np.uint64).reshape(-1, 2)
        lo, hi = words[:, 0], words[:, 1]
        ql = np.empty((m, nb, 4, 3), dtype=np.uint8)
        flat = ql.reshape(-1, 3)
        flat[:, 0] = _byte(lo, 0)  # weights 0..4
        flat[:, 1] = _byte((lo >> np.uint64(40)) | (hi << np.uint64(24)), 0)  # weights 5..9
        flat[:, 2] = _byte(hi, 16)  # weights 10..14
        last = (hi >> np.uint64(56)).astype(np.uint8).reshape(-1, 4)  # weight 15 of each sub-group
        extra = ((last.view(np.uint32).reshape(-1) * _SUM4) >> np.uint32(24)).astype(np.uint8)
        out = np.empty((m, self.row_nbytes(k)), dtype=np.uint8)
        out[:, :2] = s.astype("<f2").view(np.uint8).reshape(m, 2)
        blocks = out[:, 2:].reshape(m, nb, 13)
        np.take(ENCODE_V, ql.reshape(m, nb, 12), out=blocks[:, :, :12])
        blocks[:, :, 12] = ENCODE_V[extra].reshape(m, nb)
        return out.reshape(-1)

    def _unlayout(self, data: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, Any]:
        m, k = shape
        nb, row = k // QK, self.row_nbytes(k)
        rows = data.reshape(m, row)
        blocks = rows[:, 2:].reshape(m, nb, 13)
        ql = np.ascontiguousarray(blocks[:, :, :12]).reshape(-1, 3)  # (sub-group, k)
        extra = np.ascontiguousarray(blocks[:, :, 12]).reshape(-1)
        if not (VALID[ql].all() and VALID_EXTRA[extra].all()):
            self._refuse_invalid(ql, extra, row)
        t = np.empty((ql.shape[0], 2), dtype=np.uint64)  # sub-group r: weights 0..7, 8..15
        mid = _T5[ql[:, 1]]
        np.bitwise_or(_T5[ql[:, 0]], mid << np.uint64(40), out=t[:, 0])
        np.bitwise_or(mid >> np.uint64(24), _T5[ql[:, 2]] << np.uint64(16), out=t[:, 1])
        codes = t.view(np.int8).reshape(-1, 4, 16)
        codes[:, :, 15] = _T4[extra]
        s = np.ascontiguousarray(rows[:, :2]).view("<f2").reshape(m).astype(np.float32)
        return codes.reshape(m, k), s, lambda r: r * row

    def _refuse_invalid(self, ql: np.ndarray, extra: np.ndarray, row: int) -> None:
        per_row = row - 2
        bad_ql, bad_extra = ~VALID[ql], ~VALID_EXTRA[extra]
        # flat index of each byte among a row's block bytes, then its file offset
        candidates = []
        if bad_ql.any():
            r, kk = (int(i) for i in np.argwhere(bad_ql)[0])
            block, i16 = divmod(r, 4)
            candidates.append((block * 13 + 3 * i16 + kk, int(ql[r, kk])))
        if bad_extra.any():
            block = int(np.flatnonzero(bad_extra)[0])
            candidates.append((block * 13 + 12, int(extra[block])))
        at, value = min(candidates)
        nb = per_row // 13
        offset = (at // 13 // nb) * row + 2 + (at // 13 % nb) * 13 + at % 13
        raise CorruptDataError(
            f"{self.name} byte {offset} (0x{value:02X}) is not a valid base-3 packing"
            f"{' of four digits' if at % 13 == 12 else ''}; no encoder writes it"
        )
