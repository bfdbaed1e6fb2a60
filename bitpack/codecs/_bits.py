"""Vectorised bit helpers shared by the codecs.

Speed comes from doing byte-wise work on wide words: a 2-bit code never exceeds 2, so
four codes shifted by 0/2/4/6 bits and OR-ed never carry out of their byte, and the same
operation on a uint64 view handles eight bytes per NumPy element.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import CodecError, CorruptDataError, ScaleError

_REPEAT = 0x0101010101010101  # one in every byte of a uint64
LOW_PAIR = np.uint64(0x03 * _REPEAT)  # bits 0-1 of every byte
EVEN_BITS = np.uint64(0x55 * _REPEAT)  # bits 0, 2, 4, 6 of every byte


def lanes(a: np.ndarray) -> np.ndarray:
    """View a C-contiguous uint8 array's last axis as uint64 words where it divides evenly.

    Byte-wise operations that never carry across bytes give the same result on the wide
    view, eight times faster.
    """
    for dtype in (np.uint64, np.uint32, np.uint16):
        if a.shape[-1] % np.dtype(dtype).itemsize == 0:
            return a.view(dtype)
    return a


def word_mask(word: np.ndarray, pattern: np.uint64) -> Any:
    """``pattern`` truncated to ``word``'s width."""
    return word.dtype.type(int(pattern) & ((1 << (8 * word.dtype.itemsize)) - 1))


def rows_any(mask: np.ndarray) -> np.ndarray:
    """``mask.any(axis=1)`` for a C-contiguous bool (n, w) array, reading 8 booleans as one
    uint64 where w % 8 == 0 (a reduction along a short axis is slow in NumPy)."""
    if mask.shape[1] % 8 or mask.shape[1] > 8 * 64:
        return mask.any(axis=1)
    spans = mask.view(np.uint64)
    acc = spans[:, 0].copy()
    for j in range(1, spans.shape[1]):  # a few columns: OR them (any(axis=1) is slow here too)
        acc |= spans[:, j]
    return acc != 0


def ternary_to_codes(t: np.ndarray, spare: int = 0) -> np.ndarray:
    """Validate ternary values and return uint8 codes c = t + 1 (C-contiguous, same shape).

    ``spare`` extra bytes (code 1) follow the codes in memory, for readers of unaligned
    words that may look a few bytes past the last code.
    """
    if t.dtype != np.int8:
        if not np.issubdtype(t.dtype, np.integer):
            raise CodecError(
                f"codes must be an integer array of -1, 0, +1; got dtype {t.dtype}"
            )
        lo, hi = (int(t.min()), int(t.max())) if t.size else (0, 0)
        if lo < -1 or hi > 1:
            raise CodecError(f"codes must be -1, 0 or +1; found {lo if lo < -1 else hi}")
        t = t.astype(np.int8)
    buf = np.empty(t.size + spare, dtype=np.uint8)
    buf[t.size :] = 1
    c = buf[: t.size].reshape(t.shape)
    np.add(np.ascontiguousarray(t).view(np.uint8), np.uint8(1), out=c)
    if c.size and c.max() > 2:
        flat = int(np.argmax(c.reshape(-1) > 2))
        where = np.unravel_index(flat, c.shape)
        value = int(t[where])
        raise CodecError(
            f"codes must be -1, 0 or +1; found {value} at {tuple(int(i) for i in where)}"
        )
    return c


def codes_to_ternary(c: np.ndarray) -> np.ndarray:
    """Turn uint8 codes (0, 1, 2; already validated) into int8 t = c - 1, in place."""
    np.subtract(c, np.uint8(1), out=c)
    return c.view(np.int8)


def pack_pairs(planes: list[np.ndarray], shifts: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """out = OR of planes[i] << shifts[i]; planes hold 2-bit codes per byte (wide views)."""
    np.left_shift(planes[0], planes[0].dtype.type(shifts[0]), out=out)
    for plane, shift in zip(planes[1:], shifts[1:], strict=True):
        out |= plane << plane.dtype.type(shift)
    return out


def unpack_pair(words: np.ndarray, shift: int, out: np.ndarray) -> np.ndarray:
    """out = the 2-bit code at bit ``shift`` of every byte of ``words`` (wide views)."""
    np.right_shift(words, words.dtype.type(shift), out=out)
    out &= word_mask(words, LOW_PAIR)
    return out


def unpack_pairs(words: np.ndarray, shifts: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """out[..., n, :] = the 2-bit code at bit ``shifts[n]`` of every byte of ``words[..., :]``
    (wide views; out has a pair axis just before the word axis). One broadcast shift and one
    mask over all of ``out``: twice as fast as unpack_pair per pair when the rows are short
    (TQ2_0's 32 bytes), because NumPy's inner loop then runs along whole rows."""
    np.right_shift(words[..., None, :], np.array(shifts, dtype=words.dtype)[:, None], out=out)
    out &= word_mask(out, LOW_PAIR)
    return out


def find_code3(words: np.ndarray) -> int | None:
    """Flat byte index of the first byte holding a 2-bit code 3, or None."""
    bad = words & (words >> words.dtype.type(1)) & word_mask(words, EVEN_BITS)
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    byte_bad = bad.reshape(-1)[first : first + 1].view(np.uint8)
    return first * words.dtype.itemsize + int(np.flatnonzero(byte_bad)[0])


def refuse_code3(words: np.ndarray, codec: str) -> None:
    at = find_code3(words)
    if at is not None:
        raise CorruptDataError(
            f"{codec} data has the invalid 2-bit code 3 in byte {at}; "
            "no encoder writes it (the file is corrupt or not this codec)"
        )


def as_f32_scale(scale: Any, codec: str) -> np.float32:
    """A finite scale as an exact float32; refuse values float32 cannot hold exactly."""
    if isinstance(scale, np.ndarray) and scale.size == 1:
        scale = scale.reshape(()).item() if scale.dtype != np.float32 else scale.reshape(())[()]
    if not isinstance(scale, (numbers.Real, np.floating)) or isinstance(scale, bool):
        raise CodecError(f"{codec} needs one real scale; got {type(scale).__name__}")
    f32 = np.float32(scale)
    if not np.isfinite(f32):
        raise ScaleError(f"{codec} scale must be finite; got {scale}")
    if float(f32) != float(scale):
        raise ScaleError(
            f"{codec} scale {scale!r} is not exactly a float32 value; pass np.float32(scale) "
            "if rounding it is intended"
        )
    return f32


def f32_trailer(scale: np.float32) -> np.ndarray:
    """The 32-byte tensor trailer of I2_S, TL1 and TL2: f32 scale then 28 zero bytes."""
    trailer = np.zeros(32, dtype=np.uint8)
    trailer[:4] = np.array([scale], dtype="<f4").view(np.uint8)
    return trailer


def read_f32_trailer(data: np.ndarray, offset: int, codec: str) -> np.float32:
    """The f32 scale at ``offset``; bytes 4..31 of the trailer are ignored (formats/i2_s.md)."""
    scale = data[offset : offset + 4].view("<f4")[0]
    if not np.isfinite(scale):
        raise CorruptDataError(f"{codec} scale at byte {offset} is not finite ({scale})")
    return np.float32(scale)
