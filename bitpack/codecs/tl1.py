"""``tl1``: bitnet.cpp TL1 (ARM lookup-table kernel), GGML type 38 (formats/tl1.md).

Two weights along K form a 4-bit index 3*t0 + t1 + 4; a byte holds two consecutive
pairs of one row (first pair in the high nibble). Bytes are laid out tile by tile:
M-tile, K-tile, bm rows, by columns, 16-row group, pair of pairs, 16 rows. After the
M*K/4 bytes comes the 32-byte trailer (f32 scale, 28 zero bytes).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ..errors import CorruptDataError
from ._bits import f32_trailer, lanes, read_f32_trailer, word_mask
from ._tl import TLCodec
from .base import Shape
from .tiles import TL1_PRESETS, Tiles, divisors_desc

# A uint32 holding four codes c0..c3 (little endian) times this puts
# 48*c0 + 16*c1 + 3*c2 + c3 = (3*t0 + t1 + 4) << 4 | (3*t2 + t3 + 4) in the top byte;
# the lower partial sums stay below 256, so nothing carries into it.
_GATHER = np.uint32(0x30100301)

# Byte -> the four ternary values it holds (as the bytes of a uint32), and validity
# (both nibbles at most 8).
_B = np.arange(256)
_PAIR = np.stack([_B >> 4, _B & 15])
PAIR_VALID = (_PAIR <= 8).all(axis=0)
_T = np.stack([_PAIR[0] // 3 - 1, _PAIR[0] % 3 - 1, _PAIR[1] // 3 - 1, _PAIR[1] % 3 - 1], axis=1)
PAIR_DECODE = np.where(PAIR_VALID[:, None], _T, 0).astype(np.int8).view(np.uint32).reshape(256)
# The same for two bytes at once (a little-endian uint16 -> eight values as one uint64).
_LO, _HI = np.divmod(np.arange(65536), 256)[::-1]
PAIR_DECODE2 = PAIR_DECODE[_LO].astype(np.uint64) | PAIR_DECODE[_HI].astype(np.uint64) << np.uint64(32)
_NIBBLE_TOP = np.uint64(0x8888888888888888)
_NIBBLE_LOW = np.uint64(0x7777777777777777)


def pack_pair_bytes(codes: np.ndarray) -> np.ndarray:
    """uint8 codes (M, K), K % 4 == 0 -> pair-index bytes (M, K/4) in row order."""
    words = np.ascontiguousarray(codes).view(np.uint32)
    return ((words * _GATHER) >> np.uint32(24)).astype(np.uint8)


def unpack_pair_bytes(b: np.ndarray, codec: str) -> np.ndarray:
    """Pair-index bytes (M, K/4) -> int8 ternary (M, K); refuses an index above 8."""
    words = lanes(b.reshape(-1))
    top, low = word_mask(words, _NIBBLE_TOP), word_mask(words, _NIBBLE_LOW)
    # A nibble above 8 has its top bit set and a non-zero rest; (rest + 7) never carries
    # out of the nibble, and its top bit is set exactly when rest > 0.
    if (words & top & ((words & low) + low)).any():
        row, col = np.argwhere(~PAIR_VALID[b])[0]
        raise CorruptDataError(
            f"{codec} byte 0x{b[row, col]:02X} (row {row}, column {4 * col}) holds a pair "
            "index above 8; no encoder writes it"
        )
    if b.shape[1] % 2 == 0:
        return PAIR_DECODE2[b.view(np.uint16)].view(np.int8).reshape(b.shape[0], -1)
    return PAIR_DECODE[b].view(np.int8).reshape(b.shape[0], -1)


def _axes(m: int, k: int, t: Tiles) -> tuple[int, ...]:
    """Row-order byte grid (M, K/4) as (i0, i2, i4, r, i1, i3, i5)."""
    by = 256 // t.bm
    return (m // t.BM, t.BM // t.bm, t.bm // 16, 16, k // t.BK, t.BK // by, by // 4)


_TO_FILE = (0, 4, 1, 5, 2, 6, 3)  # -> (i0, i1, i2, i3, i4, i5, r): the file order
_TO_ROWS = tuple(int(a) for a in np.argsort(_TO_FILE))


class TL1(TLCodec):
    name = "tl1"
    type_ids = {"bitnet-cpp-2026": 38, "bitnet-cpp-2024": 38}
    file_types = {"bitnet-cpp-2024": 38, "bitnet-cpp-2026": 42}
    spec = "formats/tl1.md"
    bits_text = "2 + 256/(M·K)"
    runtime = "bitnet.cpp built with -DBITNET_ARM_TL1=ON and kernels generated for the same tiles"

    @classmethod
    def type_nbytes(cls, shape: tuple[int, ...]) -> int:
        # The fork's patched ggml_nbytes, as for I2_S: nelements / 4 + 32 (gguf.md §1.6)
        return math.prod(shape) // 4 + 32
    constraints = "M % BM == 0, K % BK == 0, BM % bm == 0, bm in {32, 64}, BK % (256/bm) == 0"
    presets = TL1_PRESETS

    def _candidates(self, m: int, k: int) -> Iterator[Tiles]:
        for bm in (32, 64):
            for BM in divisors_desc(m, bm, 256):  # noqa: N806
                for BK in divisors_desc(k, 256 // bm, 128):  # noqa: N806
                    yield Tiles(BM, BK, bm)

    def _problem(self, m: int, k: int, t: Tiles) -> str | None:
        by = 256 // t.bm if t.bm in (32, 64) else 0
        rules = [
            (t.bm in (32, 64), f"bm = {t.bm} must be 32 or 64"),
            (t.BM % t.bm == 0, f"BM = {t.BM} is not a multiple of bm = {t.bm}"),
            (m % t.BM == 0, f"M = {m} is not a multiple of BM = {t.BM}"),
            (by and t.BK % by == 0, f"BK = {t.BK} is not a multiple of 256/bm = {by}"),
            (k % t.BK == 0, f"K = {k} is not a multiple of BK = {t.BK}"),
        ]
        return next((why for ok, why in rules if not ok), None)

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * k // 4 + 32

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        grid = pack_pair_bytes(codes).reshape(_axes(m, k, self.tiles(shape)))
        out = np.empty(m * k // 4 + 32, dtype=np.uint8)
        out[:-32].reshape(grid.transpose(_TO_FILE).shape)[...] = grid.transpose(_TO_FILE)
        out[-32:] = f32_trailer(scale)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        m, k = shape
        axes = _axes(m, k, self.tiles(shape))
        packed = m * k // 4
        grid = data[:packed].reshape([axes[a] for a in _TO_FILE]).transpose(_TO_ROWS)
        t = unpack_pair_bytes(np.ascontiguousarray(grid).reshape(m, k // 4), self.name)
        return t, read_f32_trailer(data, packed, self.name)
