"""``tl2``: bitnet.cpp TL2 (x86 AVX2 lookup-table kernel), GGML type 39 or 42 (formats/tl2.md).

The first K3 = floor(K/BK)*BK columns go in triplets: v = 9*t0 + 3*t1 + t2 is stored as
a 4-bit index |v| (two per byte) plus a sign bit (v < 0); the K2 = K - K3 tail columns go
in TL1-style pairs. Regions, in order: index bytes, sign bits, tail bytes, zero padding
to F bytes, then (at pad(F, 32)) the f32 scale and 28 zero bytes.

Rows are tiled as m = i0*BM + i2*32 + r with the 8-row chunks 1 and 2 of every 32 rows
swapped; writing r = 16a + 8b + rr, the swap is just the transpose (a, b) -> (b, a).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import CorruptDataError
from ._bits import f32_trailer, read_f32_trailer
from ._tl import TLCodec
from .base import Shape, pad
from .tiles import TL2_PRESETS, Tiles, divisors_desc
from .tl1 import pack_pair_bytes, unpack_pair_bytes

# w = 9*c0 + 3*c1 + c2 (codes c = t + 1) is v + 13; index |v| and sign (v < 0) by table.
_W = np.arange(27)
INDEX_OF_W = np.abs(_W - 13).astype(np.uint8)
# (sign << 4 | index) -> the triplet's three ternary values; 127 marks invalid keys
# (an index above 13, or a sign bit on index 0, which no encoder writes).
_KEY = np.arange(32)
_V = np.where(_KEY >> 4, -(_KEY & 15), _KEY & 15)
_KEY_VALID = ((_KEY & 15) <= 13) & ~((_KEY >> 4 == 1) & (_KEY & 15 == 0))
_T2 = (_V + 1) % 3 - 1
_T1 = ((_V - _T2) // 3 + 1) % 3 - 1
_T0 = ((_V - _T2) // 3 - _T1) // 3
TRIPLET_OF_KEY = np.where(_KEY_VALID[:, None], np.stack([_T0, _T1, _T2], axis=1), 127).astype(np.int8)


def payload_limit(m: int, k: int) -> int:
    """F: the padded payload size, integer arithmetic left to right as in the converter."""
    return (k - 256) * m // 3 * 5 // 8 + 64 * m


def _row_axes(m: int, bm_: int) -> tuple[int, ...]:
    return (m // bm_, bm_ // 32, 2, 2, 8)  # (i0, i2, a, b, rr)


# Byte grid (i0, i2, a, b, rr, i1, i3) -> file order (i0, i1, i2, i3, b, a, rr).
_BYTES_TO_FILE = (0, 5, 1, 6, 3, 2, 4)
_BYTES_TO_ROWS = tuple(int(a) for a in np.argsort(_BYTES_TO_FILE))
# Sign grid (i0, i2, rhi, word, i1, g, u) -> (i0, i1, i2, g, word, u, rhi); within a
# little-endian uint16 word, triplet u of row 16*rhi + word is bit 15 - (2u + rhi).
_SIGNS_TO_FILE = (0, 4, 1, 5, 3, 6, 2)
_SIGNS_TO_ROWS = tuple(int(a) for a in np.argsort(_SIGNS_TO_FILE))


class TL2(TLCodec):
    name = "tl2"
    spec = "formats/tl2.md"
    bits_text = "≈1.67-1.70: 5/3 on K3 columns, 2 on the tail, padded to F"
    runtime = "bitnet.cpp built with -DBITNET_X86_TL2=ON and kernels generated for the same tiles"
    constraints = "bm == 32, M % BM == 0, BM % 32 == 0, BK % 24 == 0, (K mod BK) % 32 == 0, K >= 256"
    presets = TL2_PRESETS

    def _candidates(self, m: int, k: int) -> Iterator[Tiles]:
        widths = [96, 192] + [bk for bk in range(24, k + 1, 24) if bk not in (96, 192)]
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
            triplets = codes[:, :k3].reshape(m, k3 // 3, 3)
            w = triplets[..., 0] * np.uint8(9)
            w += triplets[..., 1] * np.uint8(3)
            w += triplets[..., 2]
            index = INDEX_OF_W[w]
            nibbles = (index[:, 0::2] << np.uint8(4)) | index[:, 1::2]
            at = _put(out, at, nibbles.reshape(*_row_axes(m, t.BM), k3 // t.BK, t.BK // 6), _BYTES_TO_FILE)
            signs = (w < 13).reshape(m // t.BM, t.BM // 32, 2, 16, k3 // t.BK, t.BK // 24, 8)
            bits = signs.transpose(_SIGNS_TO_FILE)[..., ::-1, ::-1].reshape(-1, 16)
            at = _put(out, at, np.packbits(bits, axis=-1, bitorder="little"), (0, 1))
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
            nibbles = nibbles.reshape(m, k3 // 6)
            sgrid = (m // t.BM, t.BM // 32, 2, 16, k3 // t.BK, t.BK // 24, 8)
            nsign = m * k3 // 24
            bits = np.unpackbits(data[at : at + nsign].reshape(-1, 2), axis=-1, bitorder="little")
            filed = [sgrid[a] for a in _SIGNS_TO_FILE]
            signs = bits.reshape(filed)[..., ::-1, ::-1].transpose(_SIGNS_TO_ROWS).reshape(m, k3 // 3)
            at += nsign
            key = np.empty((m, k3 // 3), dtype=np.uint8)
            key[:, 0::2] = nibbles >> np.uint8(4)
            key[:, 1::2] = nibbles & np.uint8(15)
            key |= signs << np.uint8(4)
            triplets = TRIPLET_OF_KEY[key]
            if (triplets[..., 0] == 127).any():
                row, col = np.argwhere(triplets[..., 0] == 127)[0]
                raise CorruptDataError(
                    f"tl2 triplet at row {row}, columns {3 * col}..{3 * col + 2} has index "
                    f"{key[row, col] & 15} with sign {key[row, col] >> 4}; no encoder writes it"
                )
            out[:, :k3] = triplets.reshape(m, k3)
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
