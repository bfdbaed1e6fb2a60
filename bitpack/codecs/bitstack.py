"""``bitstack``: BitStack residual blocks, the one lossy codec (formats/bitstack_blocks.md,
spec/codecs.md §9, spec/bitstack.md).

Unlike the ternary codecs, ``encode`` takes a float weight (or codes and a scale, which it
multiplies) and ``decode`` returns the float32 reconstruction: the blocks approximate the
weight, they do not store codes. The bytes of one tensor are the blocks in order, each
[signs | u | vt] (u, vt little-endian f16). A checkpoint stores the same arrays as separate
``qweight_i``/``u_i``/``vt_i`` tensors (bitpack.bitstack.stack_write); this codec is the
single-tensor view of them, for sizes, ``bitpack formats`` and known-answer bytes.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..bitstack import avd
from ..errors import CodecError, CorruptDataError
from ._bits import as_f32_scale
from .base import Codec, Shape, as_bytes, require


class BitStack(Codec):
    name = "bitstack"
    container = "safetensors"
    # a stack is an HF-style directory by default, one GGUF file with -o x.gguf (stack_write)
    containers = ("safetensors", "gguf")
    spec = "formats/bitstack_blocks.md"
    runtime = "bitpack; the BitStack reference loader"
    constraints = "M·K % 8 == 0"
    bits_text = "blocks·(1 + 16·rank·(M+K)/(M·K)), lossy"
    lossless_scale = "n/a (lossy)"
    param_names = ("rank", "blocks")
    lossy = True

    def __init__(self, rank: int | None = None, blocks: int | None = None) -> None:
        for key, value in (("rank", rank), ("blocks", blocks)):
            if value is not None:
                try:
                    ok = operator.index(value) >= 1
                except TypeError:
                    ok = False
                if not ok:
                    raise CodecError(f"bitstack parameter {key} must be an integer >= 1; got {value!r}")
        super().__init__(rank=None if rank is None else int(rank), blocks=None if blocks is None else int(blocks))

    @property
    def rank(self) -> int:
        return self.params.get("rank", avd.DEFAULT_RANK)

    @property
    def blocks(self) -> int:
        return self.params.get("blocks", avd.DEFAULT_BLOCKS)

    def for_shape(self, shape: Shape) -> BitStack:
        """The codec with rank and blocks explicit, as a file records them."""
        self.check(shape)
        return BitStack(rank=self.rank, blocks=self.blocks)

    def _check(self, m: int, k: int) -> None:
        require((m * k) % 8 == 0, self.name, (m, k),
                f"M*K = {m * k} is not a multiple of 8 (the signs are packed 8 per byte)")

    def block_nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return avd.block_nbytes(m, k, self.rank)

    def nbytes(self, shape: Shape) -> int:
        return self.blocks * self.block_nbytes(shape)

    # -- data ----------------------------------------------------------------------------
    def encode(self, weights: np.ndarray, scale: Any = None, *, act_scale: np.ndarray | None = None,
               svd: str = "randomized", seed: int = 0) -> np.ndarray:
        """Decompose ``weights`` (× ``scale`` when given) into ``blocks`` blocks; the bytes of all
        blocks in order, exactly ``nbytes(weights.shape)`` of them."""
        w = np.asarray(weights)
        shape = self.check(w.shape)
        if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
            raise CodecError(f"bitstack encodes real weights; got dtype {w.dtype}")
        w = w.astype(np.float32)
        if scale is not None:
            w *= as_f32_scale(scale, self.name)
        d = avd.decompose(w, self.blocks, self.rank, act_scale=act_scale, svd=svd, seed=seed)
        out = np.frombuffer(b"".join(b.tobytes() for b in d.blocks), dtype=np.uint8)
        assert out.size == self.nbytes(shape), (out.size, self.nbytes(shape))
        return out

    def decode(self, buf: Any, shape: Shape, scale: Any = None, *,
               act_scale: np.ndarray | None = None, mode: str = "f32") -> tuple[np.ndarray, None]:
        """(float32 reconstruction of ``shape``, None). A ``scale`` given beside the bytes is
        already inside the blocks (``encode`` multiplied it in) and is not applied again."""
        m, k = self.check(shape)
        return avd.reconstruct(self.split(buf, (m, k)), (m, k), act_scale, mode=mode), None

    def split(self, buf: Any, shape: Shape) -> list[avd.Block]:
        """The blocks in ``buf`` (views), after checking its length and that u, vt are finite."""
        m, k = self.check(shape)
        data = as_bytes(buf)
        want, per = self.nbytes((m, k)), self.block_nbytes((m, k))
        if data.size != want:
            raise CorruptDataError(f"{self.name} data for shape {(m, k)} must be {want} bytes, got {data.size}")
        return [avd.Block.frombuffer(data[i * per : (i + 1) * per], m, k, self.rank).check_finite(
            f"{self.name} block {i}") for i in range(self.blocks)]

    # The base class's ternary entry points, for completeness: codes c = t + 1 as uint8.
    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        return self.encode(codes.astype(np.int8) - np.int8(1), scale)

    def _decode(self, data: np.ndarray, shape: Shape, scale: Any) -> tuple[np.ndarray, None]:
        return self.decode(data, shape)
