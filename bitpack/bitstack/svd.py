"""The top-k SVD of a BitStack residual's magnitude (spec/bitstack.md §2.2 steps 3-4).

``top_k`` splits the top-k singular triplets symmetrically into u·vt; ``svd="full"`` is the
reference's full thin f32 SVD, ``"randomized"`` (the default) a randomized block Krylov
method (Halko, Martinsson & Tropp 2011; Musco & Musco 2015) with the parameters below;
``orth`` is the orthonormalisation both use.
"""

from __future__ import annotations

import numpy as np

# Randomized SVD parameters, chosen by measurement. The magnitude of a residual is a
# non-negative matrix: one singular value dominates (the mean), and after it the spectrum is
# a flat noise tail. The top direction converges at once; the other k − 1 sit in a flat tail,
# where subspace iteration converges slowly, so bitpack uses block Krylov (see randomized).
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

def top_k(a: np.ndarray, k: int, method: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
        u, vt = randomized(a, kk, rng)
    flip = u[np.abs(u).argmax(axis=0), np.arange(kk)] < 0
    u[:, flip] *= -1
    vt[flip] *= -1
    if kk < k:
        u = np.concatenate([u, np.zeros((m, k - kk), np.float32)], axis=1)
        vt = np.concatenate([vt, np.zeros((k - kk, n), np.float32)], axis=0)
    return np.ascontiguousarray(u, dtype=np.float32), np.ascontiguousarray(vt, dtype=np.float32)


def randomized(a: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    q, _ = orth(a @ rng.standard_normal((n, k + OVERSAMPLE), dtype=np.float32))
    qs, zs = [q], []
    for _ in range(POWER_ITERS):
        zs.append(a.T @ q)
        q, _ = orth(a @ orth(zs[-1])[0])
        qs.append(q)
    zs.append(a.T @ q)
    basis, mix = orth(np.concatenate(qs, axis=1))
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


def orth(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
