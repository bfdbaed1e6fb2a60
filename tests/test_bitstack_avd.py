"""BitStack decomposition core: AVD (spec/bitstack.md §2.2), sign packing (§5.2), block sizes
(§2.3), reconstruction (§3), the codecs.md §9 worked example and the §8 reference figures."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bitpack.bitstack import avd
from bitpack.bitstack.avd import (
    Block,
    block_nbytes,
    check_shape,
    decompose,
    pack_signs,
    reconstruct,
    unpack_signs,
)
from bitpack.codecs import CodecError, CorruptDataError, ShapeError, get_codec


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """On two shared cores OpenBLAS's second thread waits on other processes: the full SVDs
    below took 35 s instead of 6 s. One thread keeps this file near 15 s."""
    from bitpack.parallel import blas_threads

    with blas_threads(1):
        yield


F16_U = 2.0**-11  # unit roundoff of f16
F16_TINY = 2.0**-25  # half the spacing of f16 subnormals


# -- test matrices (spec §8: 512 x 1024, k = 16) --------------------------------------------
def gaussian(m=512, n=1024, seed=0):
    return np.random.default_rng(seed).standard_normal((m, n), dtype=np.float32)


def laplace_scaled(m=512, n=1024, seed=1, sigma=0.4):
    """Laplace entries times log-normal(0, sigma) row and column scales: the spec §8 matrix."""
    rng = np.random.default_rng(seed)
    w = rng.laplace(size=(m, n)) * np.exp(sigma * rng.standard_normal((m, 1))) * np.exp(sigma * rng.standard_normal((1, n)))
    return w.astype(np.float32)


MATRICES = {"gaussian": gaussian, "laplace": laplace_scaled}


@functools.cache
def stack(matrix: str, svd: str) -> avd.Decomposition:
    """16 blocks of rank 16, computed once per session (the full SVDs are the slow part)."""
    return decompose(MATRICES[matrix](), 16, 16, svd=svd)


# -- the codecs.md §9 worked example ---------------------------------------------------------
WORKED = np.array([[1, -2, 3, -4], [-2, 4, 6, 8]], dtype=np.float32)


@pytest.mark.parametrize("svd", ["full", "randomized"])  # randomized on a 2x4 matrix is the full SVD
def test_worked_example_bytes(svd):
    d = decompose(WORKED, n_blocks=1, rank=1, svd=svd)
    (b,) = d.blocks
    assert b.signs.tobytes() == bytes([0xA7])
    assert b.u.dtype == np.float16 and b.u.shape == (2, 1)
    assert b.vt.dtype == np.float16 and b.vt.shape == (1, 4)
    assert b.u.tobytes() == bytes.fromhex("433E4342")
    assert b.vt.tobytes() == bytes.fromhex("1D391D3DAB3F1D41")
    assert b.tobytes() == bytes.fromhex("A7" "433E4342" "1D391D3DAB3F1D41")
    assert b.nbytes == 13 == block_nbytes(2, 4, 1)
    np.testing.assert_allclose(
        reconstruct(d.blocks, (2, 4)),
        [[1.00056, -2.00112, 3.00092, -4.00224], [-2.00112, 4.00224, 6.00183, 8.00448]],
        atol=6e-6,
    )
    assert d.weight_error[0] == pytest.approx(150.0)
    assert 0 < np.sqrt(d.weight_error[1]) < 1e-6  # "about 5e-7": rounding noise of the f32 factors


def test_block_frombuffer_reads_tobytes():
    raw = bytes.fromhex("A7433E43421D391D3DAB3F1D41")
    b = Block.frombuffer(raw, 2, 4, 1)
    assert b.tobytes() == raw
    np.testing.assert_array_equal(b.u.astype(np.float32).ravel(), np.float16([1.565, 3.13]).astype(np.float32))
    with pytest.raises(CorruptDataError):
        Block.frombuffer(raw[:-1], 2, 4, 1)


# -- sign packing (spec §5.2) ----------------------------------------------------------------
def test_pack_signs_spec_example():
    positive = np.array([[True, False, True, False, False, True, True, True]])  # + - + - - + + +
    assert pack_signs(positive).tobytes() == b"\xa7"
    np.testing.assert_array_equal(unpack_signs(np.array([0xA7], np.uint8), (1, 8)), [[1, -1, 1, -1, -1, 1, 1, 1]])


def _pack_by_hand(positive: np.ndarray) -> bytes:
    """Element 8q + r of the row-major flattening goes in bit 7 - r of byte q."""
    flat = positive.reshape(-1)
    out = bytearray(flat.size // 8)
    for i, bit in enumerate(flat):
        if bit:
            out[i // 8] |= 1 << (7 - i % 8)
    return bytes(out)


@pytest.mark.parametrize("shape", [(1, 8), (8, 1), (2, 4), (3, 8), (8, 13), (5, 24), (16, 7), (24, 129)])
def test_pack_unpack_round_trip(shape):
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    packed = pack_signs(x >= 0)
    assert packed.dtype == np.uint8 and packed.shape == (shape[0] * shape[1] // 8,)
    assert packed.tobytes() == _pack_by_hand(x >= 0)
    signs = unpack_signs(packed, shape)
    assert signs.dtype == np.float32 and signs.shape == shape
    np.testing.assert_array_equal(signs, np.where(x >= 0, 1, -1))


def test_zeros_map_to_plus_one():
    w = np.array([[0.0, -0.0, 1.0, -1.0, 0.0, -2.0, -0.0, 3.0]], dtype=np.float32)
    (b,) = decompose(w, 1, 1, svd="full").blocks
    assert b.signs.tobytes() == bytes([0b11101011])  # + + + - + - + +


def test_shape_rule():
    check_shape(2, 4)
    for m, n in [(3, 5), (1, 7), (7, 9)]:
        with pytest.raises(ShapeError, match="multiple of 8"):
            check_shape(m, n)
        with pytest.raises(ShapeError, match="multiple of 8"):
            decompose(np.ones((m, n), np.float32), 1, 1)
    with pytest.raises(ShapeError):
        unpack_signs(np.zeros(2, np.uint8), (3, 5))
    with pytest.raises(CorruptDataError):
        unpack_signs(np.zeros(3, np.uint8), (2, 8))


def test_bad_input_refused():
    with pytest.raises(CodecError, match="NaN"):
        decompose(np.array([[1, np.nan, 0, 0, 0, 0, 0, 0]], np.float32), 1, 1)
    with pytest.raises(CodecError):
        decompose(WORKED, 1, 1, svd="lanczos")
    with pytest.raises(CodecError):
        decompose(WORKED, 1, 1, act_scale=np.array([1, 0, 1, 1], np.float32))
    with pytest.raises(ShapeError):
        decompose(WORKED, 1, 1, act_scale=np.ones(3, np.float32))
    with pytest.raises(ShapeError):
        decompose(WORKED, 1, 1, probe=np.ones((5, 3), np.float32))


def test_rank_above_matrix_rank_pads_with_zeros():
    d = decompose(WORKED, 2, 3, svd="full")
    assert all(b.u.shape == (2, 3) and b.vt.shape == (3, 4) for b in d.blocks)
    assert d.blocks[0].nbytes == block_nbytes(2, 4, 3)
    np.testing.assert_allclose(reconstruct(d.blocks, (2, 4)), WORKED, atol=1e-2)


# -- spec §8 figures ---------------------------------------------------------------------------
# Relative Frobenius error after n blocks, 512x1024, k = 16. The spec's Laplace matrix is
# reproduced by log-normal(0, 0.4) scales: our full-SVD values are within 0.004 of it.
SPEC_TABLE = {
    "gaussian": {1: 0.577, 2: 0.333, 3: 0.210, 4: 0.142, 8: 0.058, 16: 0.020},
    "laplace": {1: 0.637, 2: 0.396, 3: 0.276, 4: 0.202, 8: 0.091, 16: 0.033},
}


@pytest.mark.parametrize("svd", ["full", "randomized"])
@pytest.mark.parametrize("matrix", ["gaussian", "laplace"])
def test_spec_table(matrix, svd):
    rel = stack(matrix, svd).relative_error
    for n, want in SPEC_TABLE[matrix].items():
        assert rel[n] == pytest.approx(want, rel=0.03, abs=0.005), (n, rel[n], want)


@pytest.mark.parametrize("svd", ["full", "randomized"])
def test_one_gaussian_block(svd):
    assert 0.57 <= stack("gaussian", svd).relative_error[1] <= 0.61  # theory: sqrt(1 - 2/pi) = 0.603


@pytest.mark.parametrize("svd", ["full", "randomized"])
@pytest.mark.parametrize("matrix", ["gaussian", "laplace"])
def test_error_never_grows(matrix, svd):
    d = stack(matrix, svd)
    assert d.weight_error.dtype == np.float64 and d.weight_error.shape == (17,)
    assert (np.diff(d.weight_error) <= 0).all()
    assert d.weight_error[0] == pytest.approx(float(np.sum(MATRICES[matrix]().astype(np.float64) ** 2)), rel=1e-6)


# Measured excess of the randomized error over the full SVD's (relative, any block count):
# 512x1024 Gaussian 0.19%, Laplace 0.35% (formats/bitstack_blocks.md). Asserted with headroom
# for BLAS differences between machines, which change later blocks' signs chaotically.
RANDOMIZED_MARGIN = 0.01


@pytest.mark.parametrize("matrix", ["gaussian", "laplace"])
def test_randomized_within_margin_of_full(matrix):
    full, rand = stack(matrix, "full").relative_error[1:], stack(matrix, "randomized").relative_error[1:]
    excess = rand / full - 1
    assert excess.max() < RANDOMIZED_MARGIN, np.round(100 * excess, 3)
    assert excess.min() > -RANDOMIZED_MARGIN, np.round(100 * excess, 3)


# -- errors against direct computations ------------------------------------------------------------
def oracle_avd(w, n_blocks, k, s=None, x=None):
    """Spec §2.2 written out with whole matrices: f32 factors, residuals, errors in f64."""
    r = w * s if s is not None else w.copy()
    inv = np.float32(1) / s if s is not None else np.ones(w.shape[1], np.float32)
    factors, werr, oerr = [], [], []

    def account(r):
        e = r.astype(np.float64) * inv
        werr.append(float(np.sum(e**2)))
        if x is not None:
            oerr.append(float(np.sum((x.astype(np.float64) @ e.T) ** 2)))

    account(r)
    for _ in range(n_blocks):
        sign = np.where(r >= 0, 1.0, -1.0).astype(np.float32)
        big_u, sv, vt = np.linalg.svd(np.abs(r), full_matrices=False)
        u, vt = big_u[:, :k] * np.sqrt(sv[:k]), np.sqrt(sv[:k])[:, None] * vt[:k]
        flip = u[np.abs(u).argmax(axis=0), np.arange(k)] < 0
        u[:, flip] *= -1
        vt[flip] *= -1
        factors.append((sign, u, vt))
        r = r - sign * (u @ vt)
        account(r)
    return factors, np.array(werr), np.array(oerr) if x is not None else None


def small_case(seed=3):
    rng = np.random.default_rng(seed)
    w = laplace_scaled(48, 80, seed=seed)
    s = np.exp(0.5 * rng.standard_normal(80)).astype(np.float32)
    x = (rng.standard_normal((32, 80)) * s).astype(np.float32)
    return w, s, x


def test_errors_match_the_spec_written_out():
    w, s, x = small_case()
    d = decompose(w, 6, 4, act_scale=s, probe=x, svd="full")
    factors, werr, oerr = oracle_avd(w, 6, 4, s, x)
    for b, (sign, u, vt) in zip(d.blocks, factors):
        np.testing.assert_array_equal(unpack_signs(b.signs, w.shape), sign)
        np.testing.assert_allclose(b.u.astype(np.float32), u.astype(np.float16).astype(np.float32), rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(b.vt.astype(np.float32), vt.astype(np.float16).astype(np.float32), rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(d.weight_error, werr, rtol=1e-5)
    np.testing.assert_allclose(d.output_error, oerr, rtol=1e-5)
    np.testing.assert_array_equal(d.act_scale, s)


def f16_gap_bound(blocks) -> float:
    """Upper bound on ‖Σ S⊙(u16·vt16) − Σ S⊙(u·vt)‖_F when u16, vt16 are the f16 roundings of
    f32 factors: |u16 − u| ≤ 2⁻¹¹|u| + 2⁻²⁵ per entry, likewise vt."""
    total = 0.0
    for b in blocks:
        u, vt = b.u.astype(np.float64), b.vt.astype(np.float64)
        nu, nv = np.linalg.norm(u), np.linalg.norm(vt)
        du = F16_U * nu / (1 - F16_U) + F16_TINY * np.sqrt(u.size)
        dv = F16_U * nv / (1 - F16_U) + F16_TINY * np.sqrt(vt.size)
        total += du * nv + (nu + du) * dv
    return total


@pytest.mark.parametrize("matrix", ["gaussian", "laplace"])
def test_weight_error_against_f16_reconstruction(matrix):
    """weight_error comes from the f32 factors, reconstruct() from the stored f16 ones: their
    norms differ by at most ‖Δ‖ ≤ the f16 rounding bound of the factors. In practice much less:
    Δ is rounding noise nearly orthogonal to the residual, so it moves the norm at second order
    (measured: ≤ 1.4e-4 relative at 16 blocks)."""
    w = MATRICES[matrix]().astype(np.float64)
    d = stack(matrix, "randomized")
    for n in (1, 2, 4, 8, 16):
        got = np.linalg.norm(w - reconstruct(d.blocks[:n], w.shape))
        want = np.sqrt(d.weight_error[n])
        bound = f16_gap_bound(d.blocks[:n]) + 1e-6 * np.sqrt(d.weight_error[0])
        assert abs(got - want) <= bound, (n, got, want, bound)
        assert bound < 0.25 * want  # the bound says something
        assert abs(got - want) <= 1e-3 * want, (n, got, want)


def test_reconstruct_is_the_f16_factor_sum():
    w, s, _ = small_case()
    d = decompose(w, 5, 4, act_scale=s)
    exact = sum(unpack_signs(b.signs, w.shape) * (b.u.astype(np.float64) @ b.vt.astype(np.float64)) for b in d.blocks)
    np.testing.assert_allclose(reconstruct(d.blocks, w.shape), exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())
    np.testing.assert_allclose(reconstruct(d.blocks, w.shape, s), exact / s, rtol=1e-5, atol=1e-5 * np.abs(exact / s).max())
    assert not reconstruct([], w.shape).any()


def test_reconstruct_reference_f16():
    """Each term rounded to f16 and summed into an f16 accumulator, in block order (spec §3)."""
    w, _, _ = small_case()
    d = decompose(w, 5, 4)
    acc = np.zeros(w.shape, np.float16)
    for b in d.blocks:
        term = (b.u.astype(np.float64) @ b.vt.astype(np.float64)).astype(np.float16)
        acc = acc + term * unpack_signs(b.signs, w.shape).astype(np.float16)  # numpy rounds f16 sums correctly
    got = reconstruct(d.blocks, w.shape, mode="reference-f16")
    assert got.dtype == np.float32
    assert np.all(np.float32(got).astype(np.float16) == got)  # f16 values
    # the f32 product may round to f16 differently from the exact one at a tie: allow one ulp per block
    ulp = np.spacing(np.abs(acc).astype(np.float16)).astype(np.float32)
    assert (np.abs(got - acc.astype(np.float32)) <= 5 * ulp).all()
    assert np.mean(got == acc.astype(np.float32)) > 0.999
    assert not np.array_equal(got, reconstruct(d.blocks, w.shape))
    with pytest.raises(CodecError):
        reconstruct(d.blocks, w.shape, mode="bf16")


def test_reconstruct_refuses_mismatched_blocks():
    d = decompose(WORKED, 1, 1)
    with pytest.raises(CorruptDataError):
        reconstruct(d.blocks, (4, 2))


# -- activation-aware scaling (spec §2.1) ------------------------------------------------------------
def test_act_scale_formula():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 10, 12))  # [samples, tokens, channels]
    sums = np.sqrt((x**2).sum(axis=1)).sum(axis=0)
    s = avd.act_scale(sums, 6)
    assert s.dtype == np.float32 and s.shape == (12,)
    np.testing.assert_allclose(s, np.sqrt((x**2).sum(axis=1)).mean(axis=0) + 1e-3, rtol=1e-6)
    np.testing.assert_allclose(avd.act_scale(sums, 6, eps=0.0), s - np.float32(1e-3), rtol=1e-5)
    with pytest.raises(CodecError):
        avd.act_scale(sums, 0)


def test_act_scale_reconstructs_w_and_output_error_is_direct():
    w, s, x = small_case()
    d = decompose(w, 8, 4, act_scale=s, probe=x)
    for n in (2, 8):
        w_hat = reconstruct(d.blocks[:n], w.shape, s).astype(np.float64)
        rel = np.linalg.norm(w - w_hat) / np.linalg.norm(w)
        assert rel == pytest.approx(d.relative_error[n], rel=0.02)
        direct = np.sum((x.astype(np.float64) @ (w - w_hat).T) ** 2)
        assert direct == pytest.approx(d.output_error[n], rel=0.02)  # f16 factors vs f32 factors
    assert d.output_error[0] == pytest.approx(np.sum((x.astype(np.float64) @ w.T.astype(np.float64)) ** 2), rel=1e-5)
    assert (np.diff(d.weight_error) <= 0).all()


def test_unit_act_scale_is_no_scaling():
    w, _, _ = small_case()
    plain, ones = decompose(w, 4, 4), decompose(w, 4, 4, act_scale=np.ones(w.shape[1], np.float32))
    assert [b.tobytes() for b in plain.blocks] == [b.tobytes() for b in ones.blocks]
    np.testing.assert_array_equal(plain.weight_error, ones.weight_error)
    assert plain.act_scale is None and plain.output_error is None


@pytest.mark.parametrize("c", [4.0, 3.0])
def test_signs_equivariant_under_scaled_act_scale(c):
    """s and c·s give the same signs and, once 1/s is applied, the same weight."""
    w, s, _ = small_case()
    a, b = decompose(w, 6, 4, act_scale=s), decompose(w, 6, 4, act_scale=np.float32(c) * s)
    np.testing.assert_array_equal(a.blocks[0].signs, b.blocks[0].signs)  # sign(W·s) = sign(W·cs) always
    if c == 4.0:  # a power of two scales every f32 step exactly: factors scale by exactly 2
        for x, y in zip(a.blocks, b.blocks):
            np.testing.assert_array_equal(x.signs, y.signs)
            np.testing.assert_array_equal(2 * x.u, y.u)
            np.testing.assert_array_equal(2 * x.vt, y.vt)
        np.testing.assert_array_equal(a.weight_error, b.weight_error)
    else:  # later residuals differ by f32 rounding; a sign can flip only where R is ~0
        for x, y in zip(a.blocks, b.blocks):
            assert np.mean(unpack_signs(x.signs, w.shape) == unpack_signs(y.signs, w.shape)) > 0.99
        np.testing.assert_allclose(a.weight_error, b.weight_error, rtol=1e-2)
    wa, wb = reconstruct(a.blocks, w.shape, s), reconstruct(b.blocks, w.shape, np.float32(c) * s)
    assert np.linalg.norm(wa - wb) <= 0.01 * np.linalg.norm(w)


# -- determinism ----------------------------------------------------------------------------------------
def test_same_seed_same_bytes():
    w = laplace_scaled(128, 256, seed=7)
    a, b, other = decompose(w, 3, 8, seed=11), decompose(w.copy(), 3, 8, seed=11), decompose(w, 3, 8, seed=12)
    assert [x.tobytes() for x in a.blocks] == [x.tobytes() for x in b.blocks]
    assert a.blocks[0].signs.tobytes() == other.blocks[0].signs.tobytes()  # same input signs
    assert [x.tobytes() for x in a.blocks] != [x.tobytes() for x in other.blocks]  # another sketch


# -- the codec ----------------------------------------------------------------------------------------------
SPEC_SIZES = {  # spec §2.3, k = 16: (bits per weight per block, bytes per block)
    (4096, 4096): (1.1250, 2_359_296),
    (1024, 4096): (1.3125, 688_128),
    (11008, 4096): (1.0858, 6_119_424),
    (14336, 4096): (1.0804, 7_929_856),
    (8192, 8192): (1.0625, 8_912_896),
    (28672, 8192): (1.0402, 30_539_776),
    (2560, 2560): (1.2000, 983_040),
    (640, 2560): (1.5000, 307_200),
    (6912, 2560): (1.1370, 2_514_944),
}


@pytest.mark.parametrize("shape", list(SPEC_SIZES))
def test_codec_sizes_match_spec_table(shape):
    bpw, size = SPEC_SIZES[shape]
    one = get_codec("bitstack", blocks=1)
    assert one.nbytes(shape) == size == block_nbytes(*shape, 16)
    assert one.bits_per_weight(shape) == pytest.approx(bpw, abs=5e-5)
    m, n = shape
    assert one.bits_per_weight(shape) == pytest.approx(1 + 256 * (m + n) / (m * n))  # spec §8
    assert get_codec("bitstack").nbytes(shape) == 16 * size
    assert get_codec("bitstack", rank=8, blocks=3).nbytes(shape) == 3 * (m * n // 8 + 16 * (m + n))


def test_codec_identity_and_params():
    codec = get_codec("bitstack")
    assert codec.name == "bitstack" and codec.container == "safetensors" and codec.lossy
    assert codec.get_config() == {"id": "bitstack"}
    assert codec.for_shape((8, 8)).get_config() == {"id": "bitstack", "rank": 16, "blocks": 16}
    assert get_codec({"id": "bitstack", "rank": 4, "blocks": 2}) == get_codec("bitstack", rank=4, blocks=2)
    for bad in ({"rank": 0}, {"blocks": -1}, {"rank": 2.5}, {"blocks": "3"}):
        with pytest.raises(CodecError):
            get_codec("bitstack", **bad)


@pytest.mark.parametrize("shape", [(3, 5), (1, 7), (7, 9)])
def test_codec_refuses_partial_sign_bytes(shape):
    codec = get_codec("bitstack")
    for call in (codec.check, codec.nbytes, codec.bits_per_weight):
        with pytest.raises(ShapeError, match="is not a multiple of 8"):
            call(shape)
    with pytest.raises(ShapeError, match="is not a multiple of 8"):
        codec.encode(np.ones(shape, np.float32))


def test_codec_round_trip():
    codec = get_codec("bitstack", rank=4, blocks=3)
    w = laplace_scaled(64, 96, seed=9)
    buf = codec.encode(w)
    assert buf.dtype == np.uint8 and buf.size == codec.nbytes(w.shape) == 3 * block_nbytes(64, 96, 4)
    d = decompose(w, 3, 4)
    assert buf.tobytes() == b"".join(b.tobytes() for b in d.blocks)
    got, scale = codec.decode(buf, w.shape)
    assert scale is None and got.dtype == np.float32
    np.testing.assert_array_equal(got, reconstruct(d.blocks, w.shape))
    assert np.linalg.norm(got - w) / np.linalg.norm(w) == pytest.approx(d.relative_error[3], rel=0.02)
    # codes and a scale are multiplied first
    t = np.sign(np.round(w)).astype(np.int8)
    assert codec.encode(t, np.float32(0.5)).tobytes() == codec.encode(t.astype(np.float32) * 0.5).tobytes()


def test_codec_refuses_corrupt_buffers():
    codec = get_codec("bitstack", rank=2, blocks=2)
    buf = codec.encode(laplace_scaled(16, 24, seed=2))
    for bad in (buf[:-1], np.concatenate([buf, buf[:1]])):
        with pytest.raises(CorruptDataError):
            codec.decode(bad, (16, 24))
    broken = buf.copy()
    u0 = 16 * 24 // 8  # block 0's u starts after its signs
    broken[u0 : u0 + 2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)
    with pytest.raises(CorruptDataError, match="non-finite"):
        codec.decode(broken, (16, 24))


def test_round_to_f16_matches_numpy():
    """Every 997th f32 bit pattern, and every pattern near the subnormal, overflow and 1.0
    boundaries, of both signs; plus inf and NaN."""
    pat = np.concatenate([
        np.arange(0, 0x7F800001, 997, dtype=np.uint32),
        *(np.arange(c - 0x8000, c + 0x8000, dtype=np.uint32) for c in (0x38800000, 0x477FF000, 0x3F800000, 0x33000000)),
    ])
    for sign in (0, 0x80000000):
        x = (pat | np.uint32(sign)).view(np.float32)
        got = x.copy()
        avd.round_to_f16(got)
        with np.errstate(over="ignore"):
            want = x.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    special = np.array([np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, -65520, 2.0**-25, 3 * 2.0**-26], np.float32)
    got = special.copy()
    avd.round_to_f16(got)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, special.astype(np.float16).astype(np.float32))
