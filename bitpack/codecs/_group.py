"""What the 2026 group-scale GGUF layouts share: blocks of ``group_size`` weights along a
row, each with one f16 scale d (spec/formats-2026.md §1-4 and §7; formats/q2_0.md,
formats/q1_0.md, formats/pq2_0.md, formats/ptq1_0.md).

* ``encode(codes, scale)`` takes any scale ``_scales.to_codec_scales`` accepts (a scalar,
  (M, 1) per row, or (M, K // g') per group) and stores it per group as f16, exactly or not
  at all. A group whose codes are all zero, or whose scale is 0, is written as the upstream
  quantizer writes an all-zero group: d = +0 and the code of zero everywhere.
* ``decode(buf, shape)`` returns int8 codes (M, K) and float32 scales (M, K // g) in the
  normal form of §7.2: a group with d = 0 (or -0) decodes to codes 0 and scale +0, and a
  group whose codes are all 0 gets scale +0. Negative or non-finite d is corrupt data.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import CorruptDataError
from ._bits import EVEN_BITS, find_code3, lanes, refuse_code3, rows_any, word_mask
from ._scales import to_codec_scales
from .base import GGUFCodec, Shape, require


class GroupCodec(GGUFCodec):
    """Base of q2_0 / q1_0 / pq2_0 / ptq1_0: subclasses pack and unpack the code bytes."""

    scale_granularity = "group"
    scale_dtype = "f16"
    group_size: ClassVar[int]
    block_bytes: ClassVar[int]  # bytes per block, the 2-byte d included
    d_offset: ClassVar[int]  # where d sits in the block: 0 (first) or block_bytes - 2 (last)
    lossless_scale = "when every group's scale is fp16-representable"
    # llama.cpp (and Prism's fork) quantize the activations of these types to Q8_0, per 32
    # values (spec qwen3.md §6); PTQ1_0's float order there is unverified
    activation_quant = {"llama.cpp": "q8_0"}

    def _check(self, m: int, k: int) -> None:
        g = self.group_size
        require(k % g == 0, self.name, (m, k), f"K = {k} is not a multiple of {g}")

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * (k // self.group_size) * self.block_bytes

    def row_bytes(self, k: int) -> int | None:
        return k // self.group_size * self.block_bytes if k % self.group_size == 0 else None

    @property
    def _code_slice(self) -> slice:
        return slice(2, None) if self.d_offset == 0 else slice(0, self.block_bytes - 2)

    # -- encode ----------------------------------------------------------------------
    def _encode_scale(self, scale: Any, shape: Shape) -> Any:
        return scale  # converted in _encode, where the codes are known (zero groups get +0)

    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        m, k = shape
        g = self.group_size
        if not (isinstance(scale, np.ndarray) and scale.shape == (m, k // g)):  # arrays: converted by encode
            scale = to_codec_scales(scale, codes, "group", g, "f16", self.name)
        d = scale  # (M, K // g), exact f16, +0 for zero groups
        zero = d == 0
        if zero.any():  # t x 0 is the all-zero group upstream: codes 0 (c = 1), d = +0
            codes.reshape(m, k // g, g)[zero] = 1
            d[zero] = 0
        self._check_groups(codes, shape)
        blocks = codes.reshape(-1, g)
        out = np.empty((blocks.shape[0], self.block_bytes), dtype=np.uint8)
        out[:, self._code_slice] = self._pack_blocks(blocks)
        out[:, self.d_offset : self.d_offset + 2] = d.reshape(-1, 1).astype("<f2").view(np.uint8)
        return out.reshape(-1)

    def _check_groups(self, codes: np.ndarray, shape: Shape) -> None:  # noqa: B027 - only q1_0 refuses codes
        """Raise CodecError for codes this layout cannot store (uint8 c = t + 1, (M, K))."""

    # -- decode ----------------------------------------------------------------------
    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.ndarray]:
        m, k = shape
        g = self.group_size
        blocks = data.reshape(-1, self.block_bytes)
        d = np.ascontiguousarray(blocks[:, self.d_offset : self.d_offset + 2]).view("<f2").reshape(-1)
        d = d.astype(np.float32)
        bad = ~(d >= 0)  # negative, NaN; +-inf below
        bad |= np.isinf(d)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            row, group = divmod(at, k // g)
            raise CorruptDataError(
                f"{self.name} block {at} (row {row}, group {group}) has the scale {float(d[at])!r}; "
                "a stored scale must be finite and >= 0 (no quantizer writes it)"
            )
        t = self._unpack_blocks(np.ascontiguousarray(blocks[:, self._code_slice]))  # int8 (nblocks, g)
        zero_d = d == 0
        if zero_d.any():  # §7.2 rule 1: scale 0 means codes 0 (Q1_0 stores an all-zero group as bits 1)
            t[zero_d] = 0
        d[~rows_any(lanes(t.view(np.uint8)) != 0)] = 0  # rule 2: codes all 0 -> scale +0 (-0 too)
        return t.reshape(m, k), d.reshape(m, k // g)

    @abc.abstractmethod
    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """uint8 codes c = t + 1, (nblocks, g) -> code bytes (nblocks, block_bytes - 2)."""

    @abc.abstractmethod
    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        """code bytes (nblocks, block_bytes - 2) -> int8 ternary (nblocks, g); validates."""


# -- 2-bit codes, four consecutive weights per byte, the first in the lowest pair ------------
# (Q2_0 and PQ2_0: weight j at bits 2 (j mod 4) of qs[j div 4], formats-2026.md §2.)
# Packing: in a little-endian uint32 of four codes c0..c3 (one per byte), multiplying by
# 1 + 2^6 + 2^12 + 2^18 puts c_i at bit 18 + 2i; every other product lands on bits of its own
# (the codes are at most 2, so nothing carries into bits 18..25).
_GATHER = np.uint32(1 | 1 << 6 | 1 << 12 | 1 << 18)
# An f16 d as its bits (formats-2026.md §7.2): -0, and the exponent of inf and NaN.
_F16_MINUS_ZERO = np.uint16(0x8000)
_F16_EXPONENT = np.uint16(0x7C00)
_ZERO_CODES = 0x55  # four codes c = 1 (t = 0): the code byte of an all-zero group
# Unpacking: one byte pair -> eight int8 values t = c - 1 (a 65536-entry table of uint64).
_PAIR = np.arange(1 << 16, dtype=np.uint64)
_T_OF_PAIR = np.zeros(1 << 16, dtype=np.uint64)
for _j in range(8):
    _c = (_PAIR >> np.uint64(2 * _j)) & np.uint64(3)
    _T_OF_PAIR |= ((_c - np.uint64(1)) & np.uint64(0xFF)) << np.uint64(8 * _j)
del _PAIR, _j, _c


def pack_consecutive(blocks: np.ndarray) -> np.ndarray:
    """uint8 codes (nblocks, g) -> (nblocks, g // 4) bytes, weight 4q + i at bits 2i of byte q."""
    words = np.ascontiguousarray(blocks).view(np.uint32)
    words = words * _GATHER
    words >>= np.uint32(18)
    return words.astype(np.uint8)


def unpack_consecutive(qs: np.ndarray, codec: str) -> np.ndarray:
    """(nblocks, g // 4) bytes -> int8 ternary (nblocks, g); refuses code 3."""
    refuse_code3(lanes(qs), codec)
    return _T_OF_PAIR[qs.view(np.uint16)].view(np.int8)


class TwoBitGroupCodec(GroupCodec):
    """Q2_0 and PQ2_0: d first, then g // 4 bytes of consecutive 2-bit codes."""

    d_offset = 0
    zero_byte = None  # d bytes sit between the code bytes

    def _transcoder(self, src: Any) -> Callable[[np.ndarray, Shape], np.ndarray | None] | None:
        if not isinstance(src, TwoBitGroupCodec):
            return None
        big, small = max(src.group_size, self.group_size), min(src.group_size, self.group_size)
        return functools.partial(regroup, src.group_size, self.group_size) if big % small == 0 else None

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        return pack_consecutive(blocks)

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        return unpack_consecutive(qs, self.name)


def normal_blocks(data: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Q2_0 / PQ2_0 bytes as (d bits, uint16 (nblocks,); code bytes, a copy (nblocks, g // 4))
    with rule 1 of the normal form applied (formats-2026.md §7.2: d = +-0 means codes 0, bytes
    0x55); None for a negative or non-finite d or a code 3, which the reference decode refuses,
    naming where."""
    d = data.view("<u2").reshape(-1, 1 + g // 8)[:, 0].copy()  # blocks of 2 + g/4 bytes: an even size
    if ((d > _F16_MINUS_ZERO) | ((d & _F16_EXPONENT) == _F16_EXPONENT)).any():
        return None
    qs = np.ascontiguousarray(data.reshape(-1, 2 + g // 4)[:, 2:])
    if find_code3(lanes(qs)) is not None:
        return None
    qs[(d & ~_F16_MINUS_ZERO) == 0] = _ZERO_CODES
    return d, qs


def zero_groups(qs: np.ndarray) -> np.ndarray:
    """bool per row of 2-bit code bytes: are all its codes 0 (rule 2: such a group gets d = +0)?
    Every word XOR the word of codes 0, OR-ed along the row (faster than a reduction)."""
    words = lanes(qs) ^ word_mask(lanes(qs), EVEN_BITS)
    acc = words[:, 0].copy()
    for j in range(1, words.shape[1]):
        acc |= words[:, j]
    return acc == 0


def regroup(g_from: int, g_to: int, data: np.ndarray, shape: Shape) -> np.ndarray | None:
    """Q2_0 / PQ2_0 blocks of ``g_from`` weights as blocks of ``g_to``, byte for byte what
    decode + encode write. Both layouts are d (f16), then weight j at bits 2 (j mod 4) of code
    byte j div 4 (formats/q2_0.md, formats/pq2_0.md; formats-2026.md §2-3), so the code bytes
    move as they are, split or joined at group boundaries. d is copied to every finer block, or
    must agree across the blocks joined; in the normal form (§7.2) d = 0 means codes 0 and a
    group of codes 0 gets d = +0. None (the reference path decides and refuses) for a negative
    or non-finite d, a code 3, or joined blocks with different d."""
    blocks = normal_blocks(data, g_from)
    if blocks is None:
        return None
    fine = min(g_from, g_to)
    d, qs = np.repeat(blocks[0], g_from // fine), blocks[1].reshape(-1, fine // 4)
    d[zero_groups(qs)] = 0
    if g_to > fine:  # joined: the blocks that hold a nonzero code must share one d
        joined = d.reshape(-1, g_to // fine)
        d = joined.max(axis=1)  # that d, or +0 for a group of codes 0 (finite d >= 0 order as uint16)
        if ((joined != 0) & (joined != d[:, None])).any():
            return None
    out = np.empty((d.size, 1 + g_to // 8), dtype="<u2")  # a block as 16-bit words: fewer, larger copies
    out[:, 0] = d
    out[:, 1:] = qs.reshape(d.size, g_to // 4).view("<u2")
    return out.reshape(-1).view(np.uint8)


__all__ = ["GroupCodec", "TwoBitGroupCodec", "normal_blocks", "pack_consecutive", "regroup", "unpack_consecutive",
           "zero_groups"]
