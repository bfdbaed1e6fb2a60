"""What ik_llama.cpp's IQ1_BN, IQ2_BN and IQ2_BN_R4 share (formats/iq1_bn.md, formats/iq2_bn.md).

* 64-weight blocks along each row (K % 64 == 0) and **one scale per row**, stored as a
  prefix in front of the row's blocks (ik's ``row_meta_size``): f16 for IQ1_BN, f32 for
  IQ2_BN. IQ2_BN_R4 moves the prefixes of four rows to the start of their 4-row group.
* The scale is converted by :func:`_scales.to_codec_scales` (row granularity), so a scalar,
  a per-row or an exactly coarsenable per-group scale is accepted, anything else refused.
* ik's quantizer (``quantize_one_row_1bn/2bn``) turns a row whose amax is 0 into codes **+1**
  with scale 0 (threshold 0, and ``0 < 0`` is false). A row stored with scale 0 is written
  the same way, so the bytes equal the upstream quantizer's on codes x scale.
* Decoding returns the normal form of formats-2026 §7.2: a row with stored scale 0 (or -0)
  has codes 0 and scale +0; a row whose codes are all 0 has scale +0. Negative or non-finite
  stored scales are refused, naming the row.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from ..errors import CorruptDataError
from ._bits import find_code3, lanes
from ._scales import to_codec_scales
from .base import GGUFCodec, Shape, require

QK = 64  # QK_IQ1BN: weights per block
_DTYPES = {"f16": "<f2", "f32": "<f4"}


class BNCodec(GGUFCodec):
    """Base of the IQ*_BN codecs: row-scale handling and the normal form; subclasses lay out bytes."""

    scale_granularity = "row"
    runtime = "ik_llama.cpp (CPU, CUDA, Metal)"
    lossless_scale = "per row"
    block_bytes: ClassVar[int]  # bytes of one 64-weight block

    @property
    def prefix_bytes(self) -> int:
        """Bytes of one row's scale (ik's row_meta_size)."""
        return np.dtype(_DTYPES[self.scale_dtype]).itemsize

    def _check(self, m: int, k: int) -> None:
        require(k % QK == 0, self.name, (m, k), f"K = {k} is not a multiple of {QK}")

    def row_nbytes(self, k: int) -> int:
        return self.prefix_bytes + self.block_bytes * (k // QK)

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * self.row_nbytes(k)

    # -- scales ------------------------------------------------------------------------
    def _encode_scale(self, scale: Any, shape: Shape) -> Any:
        return scale  # converted in _encode, where the codes are known

    def _row_scales(self, codes: np.ndarray, scale: Any) -> np.ndarray:
        """The stored row scales, float32 (M,), +0 for -0; rows stored with scale 0 get codes
        +1 in ``codes`` (the validated, caller-independent uint8 codes), as ik writes them."""
        if not (isinstance(scale, np.ndarray) and scale.shape == (codes.shape[0], 1)):  # arrays: converted by encode
            scale = to_codec_scales(scale, codes, "row", None, self.scale_dtype, self.name)
        s = scale.reshape(-1)
        s = s + np.float32(0)  # -0 -> +0: ik's amax is a fabs maximum
        zero = s == 0
        if zero.any():
            codes[zero] = 2
        return s

    def _stored_to_normal(self, s: np.ndarray, t: np.ndarray, row_offset: Any) -> np.ndarray:
        """Check decoded row scales ``s`` (M,) and apply the §7.2 normal form to (t, s) in place."""
        bad = ~np.isfinite(s) | (s < 0)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise CorruptDataError(
                f"{self.name} row {r} has scale {float(s[r])!r} (byte {row_offset(r)}); "
                "a row scale must be finite and >= 0 (the file is corrupt or not this codec)"
            )
        s = s.astype(np.float32) + np.float32(0)
        zero = s == 0
        if zero.any():
            t[zero] = 0
        nonzero = (lanes(t.view(np.uint8)) != 0).any(axis=1)
        s[~nonzero] = 0
        return s.reshape(-1, 1)

    def _refuse_code3(self, qs: np.ndarray, to_offset: Any) -> None:
        """Refuse a 2-bit code 3 in the contiguous code bytes ``qs``, naming its file offset."""
        at = find_code3(lanes(qs))
        if at is not None:
            raise CorruptDataError(
                f"{self.name} data has the invalid 2-bit code 3 in byte {to_offset(at)}; "
                "no encoder writes it (the file is corrupt or not this codec)"
            )

    # -- data ----------------------------------------------------------------------------
    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        return self._layout(codes, self._row_scales(codes, scale), shape)

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.ndarray]:
        t, s, row_offset = self._unlayout(data, shape)
        return t, self._stored_to_normal(s, t, row_offset)

    @abc.abstractmethod
    def _layout(self, codes: np.ndarray, s: np.ndarray, shape: Shape) -> np.ndarray:
        """uint8 codes (M, K) and stored row scales (M,) -> the tensor bytes."""

    @abc.abstractmethod
    def _unlayout(self, data: np.ndarray, shape: Shape) -> tuple[np.ndarray, np.ndarray, Any]:
        """Bytes -> (int8 t (M, K) as stored, stored scales (M,), row -> byte offset of its scale)."""
