"""``tl2``: bitnet.cpp TL2 (x86 AVX2 lookup-table kernel), GGML type 39 or 42 (formats/tl2.md).

The first K3 = floor(K/BK)*BK columns go in triplets: v = 9*t0 + 3*t1 + t2 is stored as
a 4-bit index |v| (two per byte) plus a sign bit (v < 0); the K2 = K - K3 tail columns go
in TL1-style pairs. Regions, in order: index bytes, sign bits, tail bytes, zero padding
to F bytes, then (at pad(F, 32)) the f32 scale and 28 zero bytes.

Rows are tiled as m = i0*BM + i2*32 + r with the 8-row chunks 1 and 2 of every 32 rows
swapped; writing r = 16a + 8b + rr, the swap is just the transpose (a, b) -> (b, a).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ..errors import CorruptDataError
from ._bits import f32_trailer, read_f32_trailer
from ._tl import TLCodec
from .base import Shape, pad
from .tiles import TL2_PRESETS, Tiles, divisors_desc
from .tl1 import pack_pair_bytes, unpack_pair_bytes

_TRITS3 = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)])
_V3 = _TRITS3 @ [9, 3, 1]  # triplet -> v in [-13, 13]


def _triplet(index: int, sign: int) -> list[int] | None:
    """The triplet stored as (index, sign bit), or None for keys no encoder writes."""
    if index > 13 or (sign and index == 0):
        return None
    return list(_TRITS3[list(_V3).index(-index if sign else index)])


def _pair_tables() -> tuple[np.ndarray, np.ndarray]:
    """Decode tables keyed by one index byte plus its two sign bits:
    key = sign_hi << 9 | sign_lo << 8 | byte. SIX gives the six ternary values of the two
    triplets as one 6-byte item (one gather per key, not three); VALID marks keys an encoder writes."""
    valid = np.zeros(1024, dtype=bool)
    six = np.zeros((1024, 6), dtype=np.int8)
    for key in range(1024):
        hi = _triplet((key & 255) >> 4, key >> 9 & 1)
        lo = _triplet(key & 15, key >> 8 & 1)
        if hi is not None and lo is not None:
            valid[key] = True
            six[key] = hi + lo
    return valid, six.view("V6").reshape(1024)


PAIR_KEY_VALID, PAIR_KEY_SIX = _pair_tables()

# Sign bits: a row's 8 triplets u = 0..7 are packed MSB-first into one byte (np.packbits);
# rows r and r + 16 then interleave into one uint16 word, u of row r at bit 15 - 2u,
# u of row r + 16 at bit 14 - 2u.
_B = np.arange(256)
SPREAD = sum(((_B >> i) & 1) << (2 * i) for i in range(8)).astype(np.uint16)  # bit i -> 2i
_W16 = np.arange(65536)
EVEN_BITS = sum(((_W16 >> (2 * i)) & 1) << i for i in range(8)).astype(np.uint8)
ODD_BITS = sum(((_W16 >> (2 * i + 1)) & 1) << i for i in range(8)).astype(np.uint8)
# Sign byte -> the sign bits of its four triplet pairs, as bytes (hi << 1 | lo).
SIGN_PAIRS = np.array(
    [[(b >> (7 - 2 * p) & 1) << 1 | (b >> (6 - 2 * p) & 1) for p in range(4)] for b in range(256)],
    dtype=np.uint8,
).view(np.uint32).reshape(256)

# Multiplying a little-endian uint32 of codes (c0, c1, c2, next) by this puts
# w = 9*c0 + 3*c1 + c2 in byte 2; bytes 0 and 1 stay below 256, so nothing carries.
_TRIPLET_SUM = np.uint32(9 << 16 | 3 << 8 | 1)
# Multiplying eight 0/1 bytes by this gathers them into the top byte, first byte at bit 7
# (the order np.packbits uses); the cross terms land on distinct lower bits, so no carries.
_MSB_FIRST = np.uint64(0x8040201008040201)


def _triplet_values(codes: np.ndarray, k3: int) -> np.ndarray:
    """v = 9*t0 + 3*t1 + t2 of every triplet in the first k3 columns, as int8 (m, k3/3).

    Each triplet is read as one unaligned uint32 starting at its first code; the fourth
    byte belongs to the next triplet (or is the spare byte after the last code)."""
    m, k = codes.shape
    assert codes.base is not None and codes.base.nbytes > codes.nbytes, "needs spare_code_bytes"
    words = np.ndarray((m, k3 // 3), dtype="<u4", buffer=codes.base, strides=(k, 3))
    w = np.multiply(words, _TRIPLET_SUM)
    w >>= np.uint32(16)
    w -= np.uint32(13)  # w = v + 13; as bytes, the low byte is v in two's complement
    return w.astype(np.uint8).view(np.int8)


MAX_BK = 3072  # the widest K tile the search tries


def payload_limit(m: int, k: int) -> int:
    """F: the padded payload size, integer arithmetic left to right as in the converter."""
    return (k - 256) * m // 3 * 5 // 8 + 64 * m


def _row_axes(m: int, bm_: int) -> tuple[int, ...]:
    return (m // bm_, bm_ // 32, 2, 2, 8)  # (i0, i2, a, b, rr)


# Byte grid (i0, i2, a, b, rr, i1, i3) -> file order (i0, i1, i2, i3, b, a, rr).
_BYTES_TO_FILE = (0, 5, 1, 6, 3, 2, 4)
_BYTES_TO_ROWS = tuple(int(a) for a in np.argsort(_BYTES_TO_FILE))
# Sign-byte grid (i0, i2, rhi, word, i1, g) -> (i0, i1, i2, g, word, rhi).
_SIGNS_TO_FILE = (0, 4, 1, 5, 3, 2)
_SIGNS_TO_ROWS = tuple(int(a) for a in np.argsort(_SIGNS_TO_FILE))


class TL2(TLCodec):
    name = "tl2"
    # TL2 moved from 39 to 42 between the fork generations (gguf.md §3); the current one first
    type_ids = {"bitnet-cpp-2026": 42, "bitnet-cpp-2024": 39}
    file_types = {"bitnet-cpp-2024": 39, "bitnet-cpp-2026": 43}
    min_k = 256  # the three-column part needs K >= 256 (formats/tl2.md)
    activation_quant = {"bitnet.cpp": "f32-scale"}  # its TL2 kernels compute 127/m in float32
    spec = "formats/tl2.md"
    bits_text = "≈1.67-1.70: 5/3 on K3 columns, 2 on the tail, padded to F"
    runtime = "bitnet.cpp built with -DBITNET_X86_TL2=ON and kernels generated for the same tiles"

    @classmethod
    def type_nbytes(cls, shape: tuple[int, ...]) -> int | None:
        # pad(F, 32) + 32 with F from the converter's integer arithmetic (gguf.md §1.6), whatever
        # the tiles; below K = 256 F would be negative (TL2 requires K >= 256)
        k, m = shape[-1], math.prod(shape[:-1])
        return pad(payload_limit(m, k), 32) + 32 if k >= 256 else None
    constraints = "bm == 32, M % BM == 0, BM % 32 == 0, BK % 24 == 0, (K mod BK) % 32 == 0, K >= 256"
    presets = TL2_PRESETS
    spare_code_bytes = 1  # _triplet_values reads one byte past the last triplet

    def _candidates(self, m: int, k: int) -> Iterator[Tiles]:
        # The presets' widths first, then every multiple of 24 up to MAX_BK: a bounded search
        # whatever K a file claims (kernels generated for wider tiles do not exist upstream)
        widths = [96, 192] + [bk for bk in range(24, min(k, MAX_BK) + 1, 24) if bk not in (96, 192)]
        for BM in divisors_desc(m, 32, 256):  # noqa: N806
            for BK in widths:  # noqa: N806
                yield Tiles(BM, BK, 32)

    def _problem(self, m: int, k: int, t: Tiles) -> str | None:
        k2 = k % t.BK
        rules = [
            (t.bm == 32, f"bm = {t.bm} must be 32"),
            (t.BM % 32 == 0, f"BM = {t.BM} is not a multiple of 32"),
            (m % t.BM == 0, f"M = {m} is not a multiple of BM = {t.BM}"),
            (t.BK % 24 == 0, f"BK = {t.BK} is not a multiple of 24"),
            (k >= 256, f"K = {k} is below 256"),
            (t.BK <= k, f"BK = {t.BK} is larger than K = {k}"),
            (k2 % 32 == 0, f"the tail K mod BK = {k2} is not a multiple of 32"),
            (k2 <= 256, f"the tail K mod BK = {k2} is above 256 and overflows the padded size"),
        ]
        return next((why for ok, why in rules if not ok), None)

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return pad(payload_limit(m, k), 32) + 32

    def _split(self, shape: Shape) -> tuple[Tiles, int, int]:
        t = self.tiles(shape)
        k3 = shape[1] // t.BK * t.BK
        return t, k3, shape[1] - k3

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        t, k3, k2 = self._split(shape)
        out = np.zeros(self.nbytes(shape), dtype=np.uint8)
        at = 0
        if k3:
            v = _triplet_values(codes, k3)
            pairs = np.abs(v).view(np.uint16)  # |v| of triplets 2q (low byte) and 2q + 1
            nibbles = ((pairs << np.uint16(4)) | (pairs >> np.uint16(8))).astype(np.uint8)
            at = _put(out, at, nibbles.reshape(*_row_axes(m, t.BM), k3 // t.BK, t.BK // 6), _BYTES_TO_FILE)
            negative = (v < 0).view(np.uint64)  # 8 triplets' sign flags (0/1 bytes) per word
            sign_bytes = ((negative * _MSB_FIRST) >> np.uint64(56)).astype(np.uint8)
            grid = sign_bytes.reshape(m // t.BM, t.BM // 32, 2, 16, k3 // t.BK, t.BK // 24)
            rows = grid.transpose(_SIGNS_TO_FILE)  # (..., word, rhi)
            words = (SPREAD[rows[..., 0]] << np.uint16(1)) | SPREAD[rows[..., 1]]
            at = _put(out, at, words.astype("<u2").reshape(-1).view(np.uint8), (0,))
        if k2:
            tail = pack_pair_bytes(codes[:, k3:])
            at = _put(out, at, tail.reshape(*_row_axes(m, t.BM), k2 // 32, 8), _BYTES_TO_FILE)
        end = pad(payload_limit(m, k), 32)
        out[end:] = f32_trailer(scale)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        m, k = shape
        t, k3, k2 = self._split(shape)
        rows = _row_axes(m, t.BM)
        out = np.empty((m, k), dtype=np.int8)
        at = 0
        if k3:
            grid = (*rows, k3 // t.BK, t.BK // 6)
            nibbles, at = _take(data, at, grid, _BYTES_TO_FILE, _BYTES_TO_ROWS)
            sgrid = (m // t.BM, t.BM // 32, 2, 16, k3 // t.BK, t.BK // 24)
            nsign = m * k3 // 24
            words = data[at : at + nsign].view("<u2").reshape([sgrid[a] for a in _SIGNS_TO_FILE][:-1])
            at += nsign
            filed = np.stack([ODD_BITS[words], EVEN_BITS[words]], axis=-1)
            sign_bytes = np.ascontiguousarray(filed.transpose(_SIGNS_TO_ROWS)).reshape(m, k3 // 24)
            key = nibbles.reshape(m, k3 // 6).astype(np.uint16)
            key |= SIGN_PAIRS[sign_bytes].view(np.uint8).reshape(m, k3 // 6).astype(np.uint16) << np.uint16(8)
            ok = np.take(PAIR_KEY_VALID, key, mode="clip")  # key < 1024 by construction: clip never acts
            if not ok.all():
                row, col = np.argwhere(~ok)[0]
                raise CorruptDataError(
                    f"tl2 triplets at row {row}, columns {6 * col}..{6 * col + 5} are stored as "
                    f"key 0x{int(key[row, col]):03X} (an index above 13, or a sign bit on index 0); "
                    "no encoder writes it"
                )
            # "clip": no bounds pass (key < 1024 by construction)
            np.take(PAIR_KEY_SIX, key, out=out[:, :k3].view("V6"), mode="clip")
        if k2:
            tail, at = _take(data, at, (*rows, k2 // 32, 8), _BYTES_TO_FILE, _BYTES_TO_ROWS)
            out[:, k3:] = unpack_pair_bytes(tail.reshape(m, k2 // 4), self.name)
        return out, read_f32_trailer(data, pad(payload_limit(m, k), 32), self.name)


def _put(out: np.ndarray, at: int, grid: np.ndarray, order: tuple[int, ...]) -> int:
    """Write ``grid`` transposed to ``order`` at byte ``at``; return the end offset."""
    filed = grid.transpose(order)
    out[at : at + filed.size].reshape(filed.shape)[...] = filed
    return at + filed.size


def _take(data: np.ndarray, at: int, grid: tuple[int, ...], order: tuple[int, ...],
          back: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Read a region written by ``_put`` and return it in row order, with the end offset."""
    size = int(np.prod(grid))
    filed = data[at : at + size].reshape([grid[a] for a in order])
    return np.ascontiguousarray(filed.transpose(back)), at + size
