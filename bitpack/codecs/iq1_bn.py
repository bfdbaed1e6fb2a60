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
from ._bn import QK, BNCodec
from .base import Shape
from .tq1_0 import (  # the base-3 byte packing ceil(256*v/243) TQ1_0 uses too
    ENCODE_V,
    VALID,
)

# Multiplying a word whose bytes are codes q0, q1, ... by this gathers q0 + 3*q1 + 9*q2 +
# 27*q3 + 81*q4 into byte 4. No lower byte exceeds 240, so nothing carries into it, and the
# bytes above byte 4 of the word cannot reach it.
_SUM5 = np.uint64(81 | 27 << 8 | 9 << 16 | 3 << 24 | 1 << 32)
# The same for four codes (the extra byte) in a uint32: q0 + 3*q1 + 9*q2 + 27*q3 in byte 3.
_SUM4 = np.uint32(27 | 9 << 8 | 3 << 16 | 1 << 24)

_B = np.arange(256)
_K_MULT = 3 ** np.arange(4, -1, -1)  # ik's k_mult = {81, 27, 9, 3, 1}: digit j of a byte
_TRITS = (((_B[:, None] * _K_MULT) % 256) * 3) >> 8  # (byte, digit j), j = 0 least significant
VALID_EXTRA = VALID & (_TRITS[:, 4] == 0)  # extra holds four digits: the top one is 0
VALID2 = (VALID[:, None] & VALID[None, :]).reshape(-1)  # two ql bytes as one little-endian uint16
# byte -> its five ternary values t = digit - 1 as int8 bytes 0..4 of a uint64 (bytes 5..7 zero)
_T5 = (((_TRITS - 1).astype(np.int8).view(np.uint8).astype(np.uint64)) << (8 * np.arange(5, dtype=np.uint64))).sum(
    axis=1, dtype=np.uint64)
# A sub-group's 16 weights are two words: ql0's five values and ql1's first three (word 0), then
# ql1's last two, ql2's five and the extra digit (word 1; its top byte is filled from _EXTRA).
# Both words come from the byte pairs (ql0, ql1) and (ql1, ql2), read as little-endian uint16:
# one 65536-entry table each.
_PAIR = np.arange(65536)
_WORD0 = _T5[_PAIR & 255] | _T5[_PAIR >> 8] << np.uint64(40)
_WORD1 = _T5[_PAIR & 255] >> np.uint64(24) | _T5[_PAIR >> 8] << np.uint64(16)
# extra byte -> the ternary values of weight 15 of its four sub-groups, as the bytes of a uint32
_EXTRA = ((_TRITS[:, :4] - 1).astype(np.int8).view(np.uint8).astype(np.uint32)
          << (8 * np.arange(4, dtype=np.uint32))).sum(axis=1, dtype=np.uint32)
ENCODE_V2 = (ENCODE_V[None, :].astype(np.uint16) | ENCODE_V[:, None].astype(np.uint16) << 8).reshape(-1)  # v pairs


class IQ1_BN(BNCodec):  # noqa: N801 - named after the GGML type
    name = "iq1_bn"
    spec = "formats/iq1_bn.md"
    bits_text = "1.625 + 16/K"
    constraints = "K % 64 == 0"
    scale_dtype = "f16"
    lossless_scale = "per row, when every row scale is fp16-representable"
    block_bytes = 13
    spare_code_bytes = 8  # _layout reads whole words from every fifth code
    type_ids = {"ik-llama": 134}
    file_types = {"ik-llama": 136}  # LLAMA_FTYPE_MOSTLY_IQ1_BN

    def _layout(self, codes: np.ndarray, s: np.ndarray, shape: Shape) -> np.ndarray:
        m, k = shape
        nb, row = k // QK, self.row_nbytes(k)
        # Sub-group r = 16 codes from byte 16r. ql[3*i16 + k] packs the five codes from byte
        # 16r + 5k: read them as one unaligned word (the last one reaches two bytes past the
        # codes: spare_code_bytes) and multiply, which leaves v in byte 4 of each product.
        assert codes.base is not None and codes.base.nbytes >= codes.nbytes + 2, "needs spare_code_bytes"
        sub = codes.size // 16
        v = np.multiply(np.ndarray((sub, 3), dtype="<u8", buffer=codes.base, strides=(16, 5)), _SUM5)
        last = np.ascontiguousarray(codes.reshape(-1, 4, 16)[:, :, 15])  # weight 15 of each sub-group
        # Every row as values v first (prefix left for later), then one look-up v -> byte for
        # the whole tensor, two bytes at a time.
        total = m * row
        vals = np.empty(total + total % 2, dtype=np.uint8)  # prefix and pad bytes: any value
        blocks = vals[:total].reshape(m, row)[:, 2:].reshape(m, nb, 13)  # a view: rows keep their prefix
        blocks[:, :, :12].reshape(m, nb, 4, 3)[...] = v.view(np.uint8).reshape(m, nb, 4, 3, 8)[..., 4]
        blocks[:, :, 12] = ((last.view(np.uint32).reshape(-1) * _SUM4) >> np.uint32(24)).reshape(m, nb)
        out = ENCODE_V2[vals.view(np.uint16)].view(np.uint8)[:total].reshape(m, row)
        out[:, :2] = s.astype("<f2").view(np.uint8).reshape(m, 2)
        return out.reshape(-1)

    def _unlayout(self, data: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, Any]:
        m, k = shape
        nb, row = k // QK, self.row_nbytes(k)
        rows = data.reshape(m, row)
        blocks = rows[:, 2:].reshape(m, nb, 13)
        sub = m * nb * 4
        qbuf = np.empty(sub * 3 + 1, dtype=np.uint8)  # one spare byte for the last pair read
        ql = qbuf[:-1].reshape(m, nb, 12)
        ql[...] = blocks[:, :, :12]
        extra = np.ascontiguousarray(blocks[:, :, 12]).reshape(-1)
        if not (VALID2[qbuf[:-1].view(np.uint16)].all() and VALID_EXTRA[extra].all()):
            self._refuse_invalid(ql.reshape(-1, 3), extra, row)
        t = np.empty((sub, 2), dtype=np.uint64)  # sub-group r: weights 0..7, 8..15
        t[:, 0] = _WORD0[np.ndarray((sub,), dtype="<u2", buffer=qbuf, strides=(3,))]
        t[:, 1] = _WORD1[np.ndarray((sub,), dtype="<u2", buffer=qbuf, offset=1, strides=(3,))]
        t.view(np.uint8).reshape(sub, 16)[:, 15] = _EXTRA[extra].view(np.uint8)  # weight 15
        s = np.ascontiguousarray(rows[:, :2]).view("<f2").reshape(m).astype(np.float32)
        return t.view(np.int8).reshape(m, k), s, lambda r: r * row

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
