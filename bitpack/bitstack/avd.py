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
* The top-k SVD of the non-negative magnitude is a randomized range finder by default
  (Halko, Martinsson & Tropp 2011, Alg. 4.4); ``svd="full"`` is the reference's full thin
  f32 SVD.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CodecError, CorruptDataError, ShapeError

# Rows per fused pass: about 2^19 f32 values (2 MB) so a chunk and its temporaries stay in
# cache; a multiple of 8 rows so every chunk starts on a byte of the packed signs.
_CHUNK_VALUES = 1 << 19

# Randomized SVD parameters, chosen by measurement. The magnitude of a residual is a
# non-negative matrix: one singular value dominates (the mean), and after it the spectrum is
# a flat noise tail. The top direction converges at once; the other k − 1 sit in a flat tail,
# where subspace iteration converges slowly, so bitpack uses block Krylov (see _randomized).
# Largest relative-error excess over the full SVD at any block count, 16 blocks of rank 16
# (sketch width k + p, q iterations; Laplace x log-normal(0.4) row/col scales):
#                    1024x2816 Laplace   512x1024 Laplace   512x1024 Gaussian
#   Krylov p=8 q=3        0.14%              0.89%              0.93%
#   Krylov p=8 q=4        0.06%              0.35%              0.19%
#   Krylov p=0 q=4        0.15%              0.66%              0.28%
#   Krylov p=16 q=4          -               0.11%              0.13%
#   subspace p=32 q=4     0.21%  (p=16 q=4: 0.52%, p=8 q=3: 1.90%; Halko Alg. 4.4)
# The excess grows with the block count (small errors, compounding). p = 8, q = 4 costs
# 2q + 2 = 10 passes over A per block, each with a 24-column sketch, and keeps the excess
# at about 0.5% or less (0.04% at 2560x6912; a 16-block error of 0.0201 instead of 0.0200 is
# under a fifth of what one more block buys); p = 16 roughly halves it again for about 1.5x
# the time (512x1024). Figures are with one BLAS thread; another thread count or BLAS moves
# the small-matrix ones by a few 0.1% (late residual signs change).
OVERSAMPLE = 8
POWER_ITERS = 4

SVD_METHODS = ("randomized", "full")

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

    mag = np.empty((m, n), dtype=np.float32)  # A = |R|
    signs = np.empty(m * n // 8, dtype=np.uint8)  # packed sign(R), 0 -> +1
    errors = np.zeros(n_blocks + 1)
    out_errors = np.zeros(n_blocks + 1) if xs is not None else None

    for r0, r1, b0, b1 in _row_chunks(m, n):  # R₀ = W·diag(s)
        r = w[r0:r1].astype(np.float32)
        if not np.isfinite(r).all():
            row = r0 + int(np.flatnonzero(~np.isfinite(r).all(axis=1))[0])
            raise CodecError(f"bitstack cannot decompose a weight with NaN or inf (row {row})")
        if scale is not None:
            r *= scale
        _account(r, 0, errors, out_errors, inv_scale, xs)
        signs[b0:b1] = pack_signs(r >= 0)  # -0.0 >= 0 too: zeros of either sign map to +1
        np.abs(r, out=mag[r0:r1])

    blocks: list[Block] = []
    for i in range(n_blocks):
        u, vt = _top_k(mag, int(rank), svd, rng)
        last = i == n_blocks - 1
        next_signs = None if last else np.empty_like(signs)
        for r0, r1, b0, b1 in _row_chunks(m, n):
            p = u[r0:r1] @ vt  # Pᵢ for these rows, from the f32 factors (spec §2.2 step 6)
            np.subtract(mag[r0:r1], p, out=p)  # Aᵢ − Pᵢ = Sᵢ ⊙ Rᵢ₊₁
            np.multiply(p, unpack_signs(signs[b0:b1], p.shape), out=p)  # Rᵢ₊₁
            _account(p, i + 1, errors, out_errors, inv_scale, xs)
            if not last:
                next_signs[b0:b1] = pack_signs(p >= 0)
                np.abs(p, out=mag[r0:r1])
        blocks.append(Block(signs, u.astype(np.float16), vt.astype(np.float16)))
        signs = next_signs
    return Decomposition(blocks, errors, out_errors, scale, int(rank), svd)


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


def _top_k(a: np.ndarray, k: int, method: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """u (m, k), vt (k, n) in f32: the symmetric split of the top-k SVD of ``a`` (spec §2.2
    steps 3-4), with the largest-magnitude entry of each u column positive; zero-padded when
    k exceeds min(m, n)."""
    m, n = a.shape
    kk = min(k, m, n)
    if method == "full" or (POWER_ITERS + 1) * (kk + OVERSAMPLE) >= min(m, n):  # sketch = whole matrix
        big_u, sv, vt_ = np.linalg.svd(a, full_matrices=False)
        sq = np.sqrt(sv[:kk])
        u, vt = big_u[:, :kk] * sq, vt_[:kk] * sq[:, None]
    else:
        u, vt = _randomized(a, kk, rng)
    flip = u[np.abs(u).argmax(axis=0), np.arange(kk)] < 0
    u[:, flip] *= -1
    vt[flip] *= -1
    if kk < k:
        u = np.concatenate([u, np.zeros((m, k - kk), np.float32)], axis=1)
        vt = np.concatenate([vt, np.zeros((k - kk, n), np.float32)], axis=0)
    return np.ascontiguousarray(u, dtype=np.float32), np.ascontiguousarray(vt, dtype=np.float32)


def _randomized(a: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Randomized block Krylov SVD (Musco & Musco 2015; Halko et al. 2011 §4.5) in f32.

    The basis K spans AΩ, (AAᵀ)AΩ, …, (AAᵀ)^q·AΩ (sketch width l = k + OVERSAMPLE, each
    block orthonormalized before the next product). For the same passes over A this finds
    the top-k subspace of a flat-tailed spectrum much better than subspace iteration, which
    keeps only the last block (formats/bitstack_blocks.md has the measurements).

    Passes over A: 2q + 2, all l wide. Aᵀ·K is not a pass of its own: K = [Q₀ … Q_q]·M, and
    every Aᵀ·Qᵢ is already computed by the iteration but the last, so Aᵀ·K = [Aᵀ·Q₀ …]·M.
    The small SVD of B = Kᵀ·A goes through the Gram matrix B·Bᵀ in f64: vt = Ubᵀ·B / √σ.
    """
    n = a.shape[1]
    q, _ = _orth(a @ rng.standard_normal((n, k + OVERSAMPLE), dtype=np.float32))
    qs, zs = [q], []
    for _ in range(POWER_ITERS):
        zs.append(a.T @ q)
        q, _ = _orth(a @ _orth(zs[-1])[0])
        qs.append(q)
    zs.append(a.T @ q)
    basis, mix = _orth(np.concatenate(qs, axis=1))
    b = (np.concatenate(zs, axis=1).astype(np.float64) @ mix).T  # Kᵀ·A, (r, n)
    lam, ub = np.linalg.eigh(b @ b.T)  # ascending
    kk = min(k, b.shape[0])
    ub = ub[:, ::-1][:, :kk]
    sv = np.sqrt(np.maximum(lam[::-1][:kk], 0.0))
    sq = np.sqrt(sv)
    inv = np.divide(1.0, sq, out=np.zeros_like(sq), where=sv > 0)  # a zero direction gets zero factors
    vt = ((ub.T @ b) * inv[:, None]).astype(np.float32)
    u = (basis @ ub.astype(np.float32)) * sq.astype(np.float32)
    if kk < k:  # A has rank below k: the missing directions are zero
        u = np.concatenate([u, np.zeros((u.shape[0], k - kk), np.float32)], axis=1)
        vt = np.concatenate([vt, np.zeros((k - kk, n), np.float32)], axis=0)
    return u, vt


def _orth(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, M): Q = Y·M an orthonormal f32 basis of the numerically full-rank part of range(Y).

    Through the f64 Gram matrix (Y = Q·Λ^½·Vᵀ, M = V·Λ^-½): two small BLAS calls and one
    l × l eigensolver instead of a LAPACK QR, whose many small threaded calls crawl on a
    busy machine. Orthogonality error is about eps64·cond(Y)², ≤ 1e-6 with the cut below.
    """
    y64 = y.astype(np.float64)
    lam, v = np.linalg.eigh(y64.T @ y64)
    keep = lam > lam[-1] * 1e-10 if lam[-1] > 0 else np.zeros(lam.shape, bool)
    mix = v[:, keep] / np.sqrt(lam[keep])
    return (y64 @ mix).astype(np.float32), mix


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
