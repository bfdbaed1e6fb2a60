"""What TQ1_0 and TQ2_0 share: 256-element blocks along each row, each ending in an
f16 block scale d (formats/tq2_0.md, formats/tq1_0.md).

Scale modes (the ``scale_mode`` parameter, recorded in file metadata):

* ``baked`` (default): blocks holding a non-zero get d = f16(s), all-zero blocks d = 0,
  exactly what llama.cpp's quantizer writes for ternary x s input. Refuses a scale that
  f16 cannot hold exactly; a caller that accepts rounding passes the rounded value.
  An (M, K/256) array of per-block scales is written as given.
* ``separate``: d = 1.0 in every block; the exact f32 scale lives in a separate
  ``<name>.scale`` tensor that the container writes, so ``encode`` takes scale 1.0.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from ..errors import CodecError, CorruptDataError, ScaleError
from ._bits import as_f32_scale, lanes
from .base import GGUFCodec, Shape, require

QK = 256
SCALE_MODES = ("baked", "separate")
_ALL_ONES = np.uint64(0x0101010101010101)  # eight bytes of code 1 (weight 0)


class TQCodec(GGUFCodec):
    """Base of tq1_0 / tq2_0: subclasses pack and unpack the code bytes of whole blocks."""

    block_bytes: ClassVar[int]  # bytes per 256-element block, the 2-byte d included
    param_names = ("scale_mode",)
    runtime = "llama.cpp (mainline), llama-cpp-python, gguf-py"
    constraints = "K % 256 == 0"
    lossless_scale = "when s is fp16-representable, or with scale_mode='separate'"
    scale_granularity, group_size, scale_dtype = "group", QK, "f16"
    separate_scale = True
    activation_quant = {"llama.cpp": "q8_K"}  # llama.cpp's TQ vec_dot takes Q8_K activations

    def row_bytes(self, k: int) -> int | None:
        return k // QK * self.block_bytes if k % QK == 0 else None

    def __init__(self, scale_mode: str = "baked") -> None:
        if scale_mode not in SCALE_MODES:
            raise CodecError(
                f"{self.name} scale_mode must be one of {', '.join(SCALE_MODES)}; got {scale_mode!r}"
            )
        super().__init__(scale_mode=scale_mode)

    def _check(self, m: int, k: int) -> None:
        require(k % QK == 0, self.name, (m, k), f"K = {k} is not a multiple of {QK}")

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * (k // QK) * self.block_bytes

    # -- scales --------------------------------------------------------------------
    def _encode_scale(self, scale: Any, shape: Shape) -> Any:
        if self.params["scale_mode"] == "separate":
            if np.ndim(scale) != 0 or as_f32_scale(scale, self.name) != 1:
                raise ScaleError(
                    f"{self.name} with scale_mode='separate' writes block scales of 1.0 and "
                    "keeps the real scale in the '<name>.scale' tensor; encode with scale=1.0"
                )
            return np.float16(1.0)
        if np.ndim(scale) == 0:
            return _exact_f16(np.asarray(as_f32_scale(scale, self.name)), self.name)[()]
        blocks = (shape[0], shape[1] // QK)
        per_block = np.asarray(scale)
        if per_block.shape != blocks:
            raise CodecError(
                f"{self.name} per-block scales for shape {shape} must have shape {blocks}; "
                f"got {per_block.shape}"
            )
        if not (np.issubdtype(per_block.dtype, np.floating) or np.issubdtype(per_block.dtype, np.integer)):
            raise CodecError(f"{self.name} per-block scales must be real numbers; got dtype {per_block.dtype}")
        if not np.isfinite(per_block).all():
            raise ScaleError(f"{self.name} per-block scales must be finite")
        as_f32 = per_block.astype(np.float32)
        if (as_f32.astype(np.float64) != per_block.astype(np.float64)).any():
            raise ScaleError(
                f"{self.name} per-block scales must be exactly float32 values; pass them as float32 "
                "if rounding is intended"
            )
        return _exact_f16(as_f32, self.name)

    def _block_scales(self, codes: np.ndarray, scale: Any) -> np.ndarray:
        """The f16 d of every block, as uint8 pairs (nblocks, 2)."""
        nblocks = codes.size // QK
        if np.ndim(scale):
            d = scale.reshape(nblocks)
        elif self.params["scale_mode"] == "separate":
            d = np.full(nblocks, scale, dtype=np.float16)
        else:
            nonzero = (lanes(codes.reshape(nblocks, QK)) != _ALL_ONES).any(axis=1)
            d = np.where(nonzero, scale, np.float16(0)).astype(np.float16)
        return d.astype("<f2").view(np.uint8).reshape(nblocks, 2)

    def _resolve_scale(self, d: np.ndarray, codes: np.ndarray, shape: Shape) -> Any:
        """One f32 scale when every block with a non-zero agrees, else the (M, K/256) array."""
        m, k = shape
        d = d.astype(np.float32)
        if not np.isfinite(d).all():
            at = int(np.flatnonzero(~np.isfinite(d))[0])
            raise CorruptDataError(f"{self.name} block {at} has a non-finite scale ({d[at]})")
        nonzero = (lanes(codes.view(np.uint8).reshape(-1, QK)) != 0).any(axis=1)
        informative = d[nonzero]
        if informative.size == 0:
            return np.float32(d[0])
        if (informative == informative[0]).all():
            return np.float32(informative[0])
        return d.reshape(m, k // QK)

    # -- data ----------------------------------------------------------------------
    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        blocks = codes.reshape(-1, QK)
        out = np.empty((blocks.shape[0], self.block_bytes), dtype=np.uint8)
        out[:, :-2] = self._pack_blocks(blocks)
        out[:, -2:] = self._block_scales(codes, scale)
        return out.reshape(-1)

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, Any]:
        blocks = data.reshape(-1, self.block_bytes)
        t = self._unpack_blocks(np.ascontiguousarray(blocks[:, :-2])).reshape(shape)
        d = np.ascontiguousarray(blocks[:, -2:]).view("<f2").reshape(-1)
        return t, self._resolve_scale(d, t, shape)

    @abc.abstractmethod
    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """uint8 codes (nblocks, 256) -> code bytes (nblocks, block_bytes - 2)."""

    @abc.abstractmethod
    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        """code bytes (nblocks, block_bytes - 2) -> int8 ternary (nblocks, 256); validates."""


def _exact_f16(scale: np.ndarray, codec: str) -> np.ndarray:
    """``scale`` as f16, refusing any value f16 does not hold exactly (formats/tq2_0.md)."""
    f32 = scale.astype(np.float32)
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        f16 = f32.astype(np.float16)
    lost = (f16.astype(np.float32) != f32) | ~np.isfinite(f16)
    if lost.any():
        bad = float(f32.reshape(-1)[int(np.flatnonzero(lost.reshape(-1))[0])])
        raise ScaleError(
            f"{codec} block scales are fp16 and cannot hold the scale {bad!r} exactly; "
            "use scale_mode=separate (exact f32 '.scale' tensor; on the command line --params scale_mode=separate) or pass the fp16-rounded "
            "scale if rounding is acceptable"
        )
    return f16
