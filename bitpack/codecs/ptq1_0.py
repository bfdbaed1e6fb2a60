"""``ptq1_0``: PrismML PTQ1_0, GGML type 143, base-3, group 128 (formats/ptq1_0.md;
spec/formats-2026.md §4).

A 28-byte block is 24 bytes ``qs`` of five trits, 2 bytes ``qh`` of four trits, then the
f16 scale d (last). The trits are packed as in TQ1_0 (formats/tq1_0.md): a byte holds
v = sum(c_n * 3**(4 - n)) (trit n = 0 most significant; a qh byte's fifth trit is 0) as
ceil(256 v / 243), with stage widths 16 and 8 instead of 32 and 16:

* ``qs[m]``, m = 0..15, holds weights m + 16 n (n = 0..4);
* ``qs[16 + m]``, m = 0..7, holds weights 80 + m + 8 n;
* ``qh[h]``, h = 0..1, holds weights 120 + h + 2 n (n = 0..3).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ._bits import LOW_PAIR, word_mask
from ._group import GroupCodec, TwoBitGroupCodec, normal_blocks, regroup, zero_groups
from .base import Shape
from .tq1_0 import ENCODE_V, ENCODE_V2, VALID_QH, horner, refuse_invalid_base3

_CHUNK = 4096  # blocks per packing step
_POW3 = [np.uint8(3**n) for n in range(5)]
_ENC_CHECK = np.uint8(243)

# From PQ2_0's bytes (weight j: bits 2 (j mod 4) of code byte j div 4, formats/pq2_0.md),
# qh: code bytes 30, 31 (weights 120..127) -> qh[0], qh[1] in one look-up. qh[h] holds weights
# 120 + h + 2n as trits n = 0..3 with a fifth trit 0, i.e. v = 81 c0 + 27 c1 + 9 c2 + 3 c3.
# (Code 3, refused before any look-up, is entered as 2 to keep the table in range.)
_PAIR_CODES = np.minimum((np.arange(1 << 16)[:, None] >> (2 * np.arange(8))) & 3, 2)  # weight 120 + j
_QH_OF_PAIR = sum(ENCODE_V[(_PAIR_CODES[:, h::2] * [81, 27, 9, 3]).sum(axis=1)].astype(np.uint16) << (8 * h)
                  for h in range(2)).astype(np.uint16)
del _PAIR_CODES


def _ternary_of_trit(src: np.ndarray, n: int, out: np.ndarray, q: np.ndarray, low: np.ndarray) -> None:
    """out (int8) = trit n of every byte of ``src``, minus 1. With q = b * 3**n mod 256 (uint8
    arithmetic wraps) the trit is (3 q) >> 8 = [q >= 86] + [q >= 171], so t = [q >= 171] - [q < 86]."""
    if n:
        np.multiply(src, _POW3[n], out=q)
        src = q
    np.greater_equal(src, np.uint8(171), out=out.view(bool))
    np.less(src, np.uint8(86), out=low)
    out -= low.view(np.int8)


class PTQ1_0(GroupCodec):  # noqa: N801 - named after the GGML type
    name = "ptq1_0"
    spec = "formats/ptq1_0.md"
    runtime = "PrismML llama.cpp fork (prism-v7 and later, from 2026-09)"
    constraints = "K % 128 == 0"
    bits_text = "1.75"
    group_size = 128
    block_bytes = 28
    d_offset = 26
    type_ids = {"prism": 143}
    file_types = {"prism": 143}

    def _transcoder(self, src: Any) -> Callable[[np.ndarray, Shape], np.ndarray | None] | None:
        if not isinstance(src, TwoBitGroupCodec) or self.group_size % src.group_size:
            return None
        if src.group_size == self.group_size:
            return _from_two_bit
        return functools.partial(_joined_from_two_bit, src.group_size)  # Q2_0: 64-weight blocks

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        out = np.empty((blocks.shape[0], 26), dtype=np.uint8)
        for at in range(0, blocks.shape[0], _CHUNK):  # 512 KiB of codes at a time stay in cache
            out[at : at + _CHUNK] = self._pack_chunk(blocks[at : at + _CHUNK])
        return out

    def _pack_chunk(self, blocks: np.ndarray) -> np.ndarray:
        # Work on the transpose, as TQ1_0 does: row w of ``cols`` is code word w (weights
        # 8w..8w+7) of every block, so each Horner step is one long contiguous operation, and
        # the result is built as four words per block (qs[0..7], qs[8..15], qs[16..23], qh).
        nblocks = blocks.shape[0]
        cols = np.ascontiguousarray(blocks.view(np.uint64).T)  # (16 words, nblocks)
        packed = np.zeros((4, nblocks), dtype=np.uint64)
        out16 = packed.view(np.uint16)  # (4, 4 * nblocks)
        v = horner(cols[0:10].reshape(5, 2, nblocks))  # trit n of qs[0..15]: words 2n, 2n + 1
        np.take(ENCODE_V2, v.view(np.uint16), out=out16[0:2])
        v = horner(cols[10:15].reshape(5, 1, nblocks))  # trit n of qs[16..23]: word 10 + n
        np.take(ENCODE_V2, v.view(np.uint16), out=out16[2:3])
        # Word 15 is weights 120..127; its uint16 n is (qh[0], qh[1]) trit n.
        tail = np.ascontiguousarray(cols[15].view(np.uint16).reshape(nblocks, 4).T)
        out16[3].reshape(nblocks, 4)[:, 0] = ENCODE_V2[horner(tail, extra=1)]  # fifth trit 0
        return np.ascontiguousarray(packed.T).view(np.uint8)[:, :26]

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        # The transpose again: input word w (qs[0..7], qs[8..15], qs[16..23], qh) of every block
        # is one row; output word 2n, 2n + 1 (weights 16n..16n+15) is trit n of words 0, 1, and
        # word 10 + n (weights 80 + 8n ...) trit n of word 2, byte for byte: plain uint8 arithmetic.
        nblocks = qs.shape[0]
        padded = np.zeros((nblocks, 32), dtype=np.uint8)
        padded[:, :26] = qs
        cols = np.ascontiguousarray(padded.view(np.uint64).T).view(np.uint8)  # (4, 8 * nblocks)
        qh = np.ascontiguousarray(cols[3].reshape(nblocks, 8)[:, :2])
        # A byte is a packing iff (243 * b) mod 256 < 243 (some v has ceil(256 v / 243) = b).
        if (cols[:3] * _ENC_CHECK >= _ENC_CHECK).any() or not VALID_QH[qh].all():
            self._refuse_invalid(qs)
        words = np.empty((16, nblocks), dtype=np.uint64)
        out = words.view(np.int8)  # (16, 8 * nblocks)
        scratch = np.empty((2, 8 * nblocks), dtype=np.uint8), np.empty((2, 8 * nblocks), dtype=bool)
        for n in range(5):
            _ternary_of_trit(cols[0:2], n, out[2 * n : 2 * n + 2], *scratch)
            _ternary_of_trit(cols[2], n, out[10 + n], scratch[0][0], scratch[1][0])
        tail = out[15].reshape(nblocks, 4, 2)  # weights 120 + 2n + h = trit n of qh[h]
        small = (np.empty((nblocks, 2), dtype=np.int8), np.empty((nblocks, 2), dtype=np.uint8),
                 np.empty((nblocks, 2), dtype=bool))
        for n in range(4):
            _ternary_of_trit(qh, n, *small)
            tail[:, n] = small[0]
        return np.ascontiguousarray(words.T).view(np.int8)

    def _refuse_invalid(self, qs: np.ndarray) -> None:
        refuse_invalid_base3(qs, self.name, 12)  # 24 bytes of five trits, then 2 of the high trits


def _joined_from_two_bit(g: int, data: np.ndarray, shape: Shape) -> np.ndarray | None:
    """Blocks of g weights (Q2_0) joined into PQ2_0's 128 first (None where their d differ)."""
    joined = regroup(g, 128, data, shape)
    return None if joined is None else _from_two_bit(joined, shape)


def _from_two_bit(data: np.ndarray, shape: Shape) -> np.ndarray | None:
    """PQ2_0 bytes -> PTQ1_0 bytes, byte for byte what decode + encode write, never spelling
    out the codes one per byte. None where the reference path must refuse (normal_blocks).

    PQ2_0 holds weight j in bits 2 (j mod 4) of code byte j div 4 (formats/pq2_0.md). So the
    five weights m + 16 n of qs[m] (m < 16) are bit pair m mod 4 of byte m div 4 of 32-bit
    code word n, and the five weights 80 + m + 8 n of qs[16 + m] (m < 8) the same pair and
    byte of 16-bit code word 10 + n: each region is base-3 packed from five words (_base3)."""
    blocks = normal_blocks(data, 128)
    if blocks is None:
        return None
    d, qs = blocks
    d[zero_groups(qs)] = 0  # rule 2 of the normal form: codes all 0, d = +0 (formats-2026.md §7.2)
    out = np.empty((d.size, 28), dtype=np.uint8)
    _base3(np.ascontiguousarray(qs.view(np.uint32)[:, 0:5].T), out[:, 0:16])
    _base3(np.ascontiguousarray(qs.view(np.uint16)[:, 10:15].T), out[:, 16:24])
    out16 = out.view("<u2")  # 14 16-bit words a block: qh is word 12, d word 13
    out16[:, 12] = _QH_OF_PAIR.take(qs.view("<u2")[:, 15])
    out16[:, 13] = d
    return out.reshape(-1)


def _base3(words: np.ndarray, out: np.ndarray) -> None:
    """out (nblocks, 4 w) = the packed bytes of v = sum(c_n * 3**(4 - n)), where bit pair i of
    byte a of ``words[n]`` ((5, nblocks) words of w bytes) is trit n of out byte 4 a + i. Each
    bit pair is spread into a byte (the codes are at most 2, so the Horner steps never carry
    across bytes), and the four pairs' results are interleaved into place."""
    shifts = np.arange(0, 8, 2, dtype=words.dtype)[:, None, None]
    planes = (words[None] >> shifts) & word_mask(words, LOW_PAIR)  # (pair i, trit n, nblocks)
    v = horner(planes.transpose(1, 0, 2))  # (pair i, nblocks): byte a is v of out byte 4 a + i
    packed = ENCODE_V2.take(v.view(np.uint16)).view(words.dtype)
    out.view(np.uint32)[...] = _transpose_bytes(packed).T


def _transpose_bytes(rows: np.ndarray) -> np.ndarray:
    """(w, nblocks) uint32 words whose byte i is byte a of rows[i], for word a, from (4,
    nblocks) rows of w = 2 or 4 bytes: a 4 x w byte transpose by shifts and masks on whole
    words (a strided byte copy costs twice as much). Bytes of rows 0, 1 are paired first into
    16-bit slots (of even and of odd bytes), likewise rows 2, 3; each output word is then a slot
    of the first pair (its bytes 0, 1) under the same slot of the second (bytes 2, 3)."""
    low = word_mask(rows, np.uint64(0x00FF00FF00FF00FF))  # the even bytes of a word
    eight, sixteen, slot = rows.dtype.type(8), np.uint32(16), np.uint32(0xFFFF)
    pairs = [[((x & low) | ((y & low) << eight)).astype(np.uint32),  # slot s: bytes 2 s of x, y
              (((x >> eight) & low) | (y & ~low)).astype(np.uint32)]  # slot s: bytes 2 s + 1 of x, y
             for x, y in (rows[0:2], rows[2:4])]
    out = np.empty((rows.dtype.itemsize, rows.shape[1]), dtype=np.uint32)
    for a in range(out.shape[0]):
        shift, odd = np.uint32(16 * (a // 2)), a % 2
        lo, hi = pairs[0][odd] >> shift, pairs[1][odd] >> shift
        np.bitwise_or(lo & slot, (hi & slot) << sixteen, out=out[a])
    return out
