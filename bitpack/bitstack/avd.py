"""Iterative absolute-value decomposition (AVD) and reconstruction of BitStack blocks.

spec/bitstack.md §2.2 (decomposition), §2.3 (what a block stores), §3 (reconstruction),
§5.2 (sign packing); the per-block byte layout is formats/bitstack_blocks.md.

Block i of a matrix is Sᵢ ⊙ (uᵢ·vtᵢ): a ±1 sign matrix, packed 8 per byte, times a rank-k
magnitude stored as two f16 factors. Each block approximates the residual the blocks before
it left, so loading more blocks gives a better matrix.

How the work is laid out, for speed and memory on large matrices:

* Only two full-size arrays live during ``decompose``: the magnitude ``A = |R|`` (f32) and
  the packed signs of R (1/32 of that). R itself is never stored: Rᵢ = Sᵢ ⊙ Aᵢ, so
  Rᵢ₊₁ = Rᵢ − Sᵢ ⊙ Pᵢ = Sᵢ ⊙ (Aᵢ − Pᵢ) with Pᵢ = uᵢ·vtᵢ. Round-to-nearest is symmetric,
  so fl(Sᵢ·(Aᵢ − Pᵢ)) = fl(Rᵢ − Sᵢ·Pᵢ): the same f32 values the reference's update gives.
* After each SVD one fused pass over row chunks (a few MB, cache-resident) forms Pᵢ,
  the new residual, its errors, its packed signs and its magnitude, instead of one full
  pass per operation.
* The top-k SVD of the non-negative magnitude (:mod:`.svd`) is a randomized block Krylov
  method by default; ``svd="full"`` is the reference's full thin f32 SVD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..errors import CodecError, CorruptDataError, ShapeError
from .svd import SVD_METHODS, top_k

# Rows per fused pass: about 2^19 f32 values (2 MB) so a chunk and its temporaries stay in
# cache; a multiple of 8 rows so every chunk starts on a byte of the packed signs.
_CHUNK_VALUES = 1 << 19

DEFAULT_BLOCKS = 16  # every released BitStack run: --niter 16 --k 16 (spec/bitstack.md §2.2)
DEFAULT_RANK = 16
ACT_EPS = 1e-3  # the reference's additive term in the activation scale (spec §2.1)
MAX_COUNT = 4096  # the largest block count or rank bitpack writes or reads (bounds loops over hostile files)

# byte -> its 8 signs as f32 ±1, most significant bit first (spec §5.2: bit 1 = +1).
_SIGN_LUT = np.where(np.unpackbits(np.arange(256, dtype=np.uint8)).reshape(256, 8) == 1, 1.0, -1.0).astype(
    np.float32
)


# -- one block ---------------------------------------------------------------------------
@dataclass
class Block:
    """One residual block: packed signs (m·n/8 bytes), u f16 (m, k), vt f16 (k, n)."""

    signs: np.ndarray  # uint8 (m*n//8,), +1 -> bit 1, -1 -> bit 0, MSB first, row-major
    u: np.ndarray  # float16 (m, k)
    vt: np.ndarray  # float16 (k, n)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.u.shape[0]), int(self.vt.shape[1])

    @property
    def rank(self) -> int:
        return int(self.u.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.signs.nbytes + self.u.nbytes + self.vt.nbytes)

    def check_finite(self, where: str) -> Block:
        """The block itself, or CorruptDataError when a factor holds NaN or inf (a stored
        block must never turn a model's logits into NaN)."""
        if not (np.isfinite(self.u).all() and np.isfinite(self.vt).all()):
            raise CorruptDataError(f"{where} has a non-finite f16 factor (u or vt)")
        return self

    def tobytes(self) -> bytes:
        """The block's bytes: signs, then u and vt as little-endian f16, row-major."""
        return b"".join(
            np.ascontiguousarray(a, dtype=dt).tobytes()
            for a, dt in ((self.signs, np.uint8), (self.u, "<f2"), (self.vt, "<f2"))
        )

    @classmethod
    def frombuffer(cls, buf: Any, m: int, n: int, k: int) -> Block:
        """A block read from exactly ``block_nbytes(m, n, k)`` bytes (views, no copy)."""
        data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.reshape(-1).view(np.uint8)
        want = block_nbytes(m, n, k)
        if data.size != want:
            raise CorruptDataError(f"a bitstack block of shape ({m}, {n}), rank {k} is {want} bytes, got {data.size}")
        s, nu = m * n // 8, m * k
        u = data[s : s + 2 * nu].view("<f2").reshape(m, k)
        vt = data[s + 2 * nu :].view("<f2").reshape(k, n)
        return cls(data[:s], u, vt)


def check_shape(m: int, n: int) -> None:
    """Raise ShapeError unless the (m, n) sign matrix packs into whole bytes."""
    if m <= 0 or n <= 0 or (m * n) % 8:
        rule = "needs a non-empty (M, K) shape" if m <= 0 or n <= 0 else (
            f"M*K = {m * n} is not a multiple of 8 (signs are packed 8 per byte, formats/bitstack_blocks.md)"
        )
        raise ShapeError(f"bitstack cannot encode shape ({m}, {n}): {rule}")


def block_nbytes(m: int, n: int, k: int) -> int:
    """Bytes of one block: m·n/8 sign bytes + 2·k·(m + n) f16 factor bytes (spec §2.3)."""
    check_shape(m, n)
    return m * n // 8 + 2 * k * (m + n)


def pack_signs(positive: np.ndarray) -> np.ndarray:
    """bool (m, n), True for +1 -> uint8 (m·n/8,): 8 per byte, MSB first, row-major (§5.2)."""
    positive = np.asarray(positive)
    if positive.size % 8:
        raise ShapeError(f"bitstack cannot pack {positive.size} signs: not a multiple of 8")
    return np.packbits(positive.reshape(-1).astype(bool, copy=False))


def unpack_signs(packed: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """uint8 (m·n/8,) -> float32 (m, n) of ±1."""
    m, n = (int(d) for d in shape)
    check_shape(m, n)
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != m * n // 8:
        raise CorruptDataError(f"signs of a ({m}, {n}) matrix are {m * n // 8} bytes, got {packed.size}")
    return np.take(_SIGN_LUT, packed, axis=0).reshape(m, n)


def act_scale(sums_of_norms: np.ndarray, n_samples: int, eps: float = ACT_EPS) -> np.ndarray:
    """sⱼ = (1/N)·Σ_b √(Σ_t X[b,t,j]²) + eps (spec §2.1), from the per-sample L2 norms summed."""
    if n_samples <= 0:
        raise CodecError(f"act_scale needs at least one calibration sample, got {n_samples}")
    return (np.asarray(sums_of_norms, dtype=np.float64) / n_samples + eps).astype(np.float32)


# -- decomposition -------------------------------------------------------------------------
@dataclass
class Decomposition:
    blocks: list[Block]
    weight_error: np.ndarray  # f64 (n_blocks+1,): ‖W − Ŵ_b‖_F², b = 0..n_blocks, from the f32 factors
    output_error: np.ndarray | None  # f64 (n_blocks+1,): ‖X (W − Ŵ_b)ᵀ‖_F² for the probe X
    act_scale: np.ndarray | None  # f32 (n,), as given
    rank: int = 16
    svd: str = "randomized"

    @property
    def relative_error(self) -> np.ndarray:
        """‖W − Ŵ_b‖_F / ‖W‖_F for b = 0..n_blocks (0 for an all-zero W)."""
        total = self.weight_error[0]
        return np.sqrt(self.weight_error / total) if total > 0 else np.zeros_like(self.weight_error)


def decompose(
    w: np.ndarray,
    n_blocks: int = 16,
    rank: int = 16,
    *,
    act_scale: np.ndarray | None = None,
    probe: np.ndarray | None = None,
    svd: str = "randomized",
    seed: int = 0,
) -> Decomposition:
    """Iterative AVD of ``w`` (out, in) into ``n_blocks`` blocks of rank ``rank`` (spec §2.2).

    ``act_scale`` (in,) decomposes W·diag(s) (spec §2.1, bitpack's standalone form); errors are
    reported in the original weight space. ``probe`` (rows, in) is a sample of this matrix's
    input activations for ``output_error``; it costs rows·m·n multiply-adds per block.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ShapeError(f"bitstack decomposes 2-D weights (M, K); got shape {w.shape}")
    m, n = (int(d) for d in w.shape)
    check_shape(m, n)
    if int(n_blocks) != n_blocks or n_blocks < 0 or int(rank) != rank or rank < 1:
        raise CodecError(f"bitstack needs n_blocks >= 0 and rank >= 1 (integers); got {n_blocks}, {rank}")
    if svd not in SVD_METHODS:
        raise CodecError(f"svd must be one of {', '.join(SVD_METHODS)}; got {svd!r}")
    scale, inv_scale = _scales(act_scale, n)
    xs = _probe(probe, n, inv_scale)
    rng = np.random.default_rng(seed)
    errors = np.zeros(n_blocks + 1)
    out_errors = np.zeros(n_blocks + 1) if xs is not None else None
    account = partial(_account, errors=errors, out_errors=out_errors, inv_scale=inv_scale, xs=xs)

    mag, signs = _first_residual(w, scale, account)
    blocks: list[Block] = []
    for i in range(n_blocks):
        u, vt = top_k(mag, int(rank), svd, rng)
        next_signs = _next_residual(mag, signs, u, vt, i + 1, account, last=i == n_blocks - 1)
        blocks.append(Block(signs, u.astype(np.float16), vt.astype(np.float16)))
        signs = next_signs
    return Decomposition(blocks, errors, out_errors, scale, int(rank), svd)


Account = Callable[[np.ndarray, int], None]  # adds rows of the residual R_b to the error sums


def _first_residual(w: np.ndarray, scale: np.ndarray | None, account: Account) -> tuple[np.ndarray, np.ndarray]:
    """R₀ = W·diag(s), kept as (A = |R₀| in f32, packed sign(R₀)); its errors go to ``account``."""
    m, n = w.shape
    mag = np.empty((m, n), dtype=np.float32)  # A = |R|
    signs = np.empty(m * n // 8, dtype=np.uint8)  # packed sign(R), 0 -> +1
    for r0, r1, b0, b1 in _row_chunks(m, n):
        r = w[r0:r1].astype(np.float32)
        if not np.isfinite(r).all():
            row = r0 + int(np.flatnonzero(~np.isfinite(r).all(axis=1))[0])
            raise CodecError(f"bitstack cannot decompose a weight with NaN or inf (row {row})")
        if scale is not None:
            r *= scale
        account(r, 0)
        signs[b0:b1] = pack_signs(r >= 0)  # -0.0 >= 0 too: zeros of either sign map to +1
        np.abs(r, out=mag[r0:r1])
    return mag, signs


def _next_residual(mag: np.ndarray, signs: np.ndarray, u: np.ndarray, vt: np.ndarray, b: int, account: Account,
                   *, last: bool) -> np.ndarray | None:
    """One fused pass over row chunks: Rᵦ = Sᵢ ⊙ (Aᵢ − uᵢ·vtᵢ), its errors to ``account``, and
    (unless ``last``) its magnitude written over ``mag`` and its packed signs returned."""
    m, n = mag.shape
    next_signs = None if last else np.empty_like(signs)
    for r0, r1, b0, b1 in _row_chunks(m, n):
        p = u[r0:r1] @ vt  # Pᵢ for these rows, from the f32 factors (spec §2.2 step 6)
        np.subtract(mag[r0:r1], p, out=p)  # Aᵢ − Pᵢ = Sᵢ ⊙ Rᵢ₊₁
        np.multiply(p, unpack_signs(signs[b0:b1], p.shape), out=p)  # Rᵢ₊₁
        account(p, b)
        if not last:
            next_signs[b0:b1] = pack_signs(p >= 0)
            np.abs(p, out=mag[r0:r1])
    return next_signs


def _scales(s: np.ndarray | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(s, 1/s) as f32 (n,), or (None, None) without activation scaling."""
    if s is None:
        return None, None
    s = np.asarray(s, dtype=np.float32).reshape(-1)
    if s.shape != (n,):
        raise ShapeError(f"act_scale must have one value per input channel ({n}); got {s.size}")
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise CodecError("act_scale must be finite and positive")
    return s, np.float32(1) / s


def _probe(x: np.ndarray | None, n: int, inv_scale: np.ndarray | None) -> np.ndarray | None:
    """X·diag(1/s): then X·Eᵀ = X·diag(1/s)·Rᵀ for the scaled residual R."""
    if x is None:
        return None
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != n:
        raise ShapeError(f"probe activations must be (rows, {n}); got shape {x.shape}")
    return np.ascontiguousarray(x * inv_scale if inv_scale is not None else x)


def _account(r, b, errors, out_errors, inv_scale, xs) -> None:
    """Add rows ``r`` of the scaled residual R_b to ‖R·diag(1/s)‖² and ‖X·diag(1/s)·Rᵀ‖²."""
    # Sums of squares in f64: an f32 BLAS dot over a chunk drifts by ~1e-6 relative.
    e = r.astype(np.float64) if inv_scale is None else np.multiply(r, inv_scale, dtype=np.float64)
    flat = e.reshape(-1)
    errors[b] += float(flat @ flat)
    if xs is not None:
        y = (xs @ r.T).astype(np.float64).reshape(-1)
        out_errors[b] += float(y @ y)


def _row_chunks(m: int, n: int) -> Iterator[tuple[int, int, int, int]]:
    """(first row, end row, first sign byte, end sign byte) of cache-sized row chunks."""
    rows = max(8, (_CHUNK_VALUES // n) // 8 * 8)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        yield r0, r1, r0 * n // 8, r1 * n // 8


# -- reconstruction -------------------------------------------------------------------------
RECONSTRUCT_MODES = ("f32", "reference-f16")


def reconstruct(
    blocks: Sequence[Block],
    shape: Sequence[int],
    act_scale: np.ndarray | None = None,
    *,
    mode: str = "f32",
) -> np.ndarray:
    """Ŵ = (Σᵢ Sᵢ ⊙ (uᵢ·vtᵢ))·diag(1/s) as float32 (m, n) (spec §3).

    ``mode="f32"``: f32 products and sums from the f16 factors (bitpack's reconstruction).
    ``mode="reference-f16"``: the reference loader's numerics: each term rounded to f16
    (its product accumulated in f32 and rounded once, as cuBLAS does) and added into an f16
    accumulator in block order; then widened to f32 and divided by s.

    Works row chunk by row chunk through all blocks, so the only full-size array is the result.
    """
    m, n = (int(d) for d in shape)
    check_shape(m, n)
    if mode not in RECONSTRUCT_MODES:
        raise CodecError(f"mode must be one of {', '.join(RECONSTRUCT_MODES)}; got {mode!r}")
    _, inv_scale = _scales(act_scale, n)
    factors = []
    for i, blk in enumerate(blocks):
        k = blk.u.shape[1] if blk.u.ndim == 2 else -1
        if blk.u.shape != (m, k) or blk.vt.shape != (k, n) or blk.signs.size != m * n // 8:
            raise CorruptDataError(
                f"bitstack block {i} does not fit shape ({m}, {n}): signs {blk.signs.size} bytes, "
                f"u {blk.u.shape}, vt {blk.vt.shape}"
            )
        factors.append((blk.signs.reshape(-1), blk.u.astype(np.float32), blk.vt.astype(np.float32)))
    f16 = mode == "reference-f16"
    out = np.empty((m, n), dtype=np.float32)
    for r0, r1, b0, b1 in _row_chunks(m, n):
        acc = out[r0:r1]
        acc.fill(0)
        for signs, u, vt in factors:
            p = u[r0:r1] @ vt
            if f16:
                round_to_f16(p)
            np.multiply(p, unpack_signs(signs[b0:b1], p.shape), out=p)
            acc += p
            if f16:  # f32 (24 bits) >= 2·11 + 2: rounding the f32 sum of two f16 values to f16
                round_to_f16(acc)  # gives the correctly rounded f16 sum (no double-rounding error)
        if inv_scale is not None:
            acc *= inv_scale
    return out


_F16_MIN_NORMAL = np.uint32(0x38800000)  # 2^-14 as f32 bits: below it f16 is subnormal
_F16_OVERFLOW = np.uint32(0x477FF000)  # 65520 as f32 bits: from here f16 rounds to inf


def round_to_f16(x: np.ndarray) -> None:
    """Round a contiguous f32 array in place to the nearest f16 values (ties to even): the
    bits of ``x.astype(float16).astype(float32)``, about 3x faster. Normal range: add half an
    f16 ulp (minus one unless the kept lsb is odd) to the f32 bits and clear the 13 dropped
    mantissa bits; f16 subnormals are multiples of 2^-24; 65520 and up overflow to inf."""
    b = x.view(np.uint32)
    mag = b & np.uint32(0x7FFFFFFF)
    small = mag < _F16_MIN_NORMAL
    big = mag >= _F16_OVERFLOW
    sub = x[small] if small.any() else None
    over = x[big] if big.any() else None  # also inf and NaN, kept as they are
    t = (b >> np.uint32(13)) & np.uint32(1)
    t += np.uint32(0x0FFF)
    b += t
    b &= np.uint32(0xFFFFE000)
    if sub is not None:
        x[small] = np.rint(sub * np.float32(2.0**24)) * np.float32(2.0**-24)
    if over is not None:
        x[big] = np.where(np.isnan(over), over, np.copysign(np.float32(np.inf), over))


__all__ = [
    "Block",
    "Decomposition",
    "act_scale",
    "block_nbytes",
    "check_shape",
    "decompose",
    "pack_signs",
    "reconstruct",
    "unpack_signs",
]
