"""The executor's batched BitLinear kernels equal the per-block reference loops bit for bit.

``bitlinear``, ``bitlinear_q8k`` and ``bitlinear_q8_0`` compute every block's (or group's)
integer sums in one batched BLAS call and then add the scaled blocks in order. The functions
below are the loops they replaced, one matmul per block, kept as the definition. The sums are
exact integers (architectures.md §8), so only the float32 order of the scaled additions could
differ, and it must not: every bit is compared, signed zeros included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitpack.executor import Executor, executor
from bitpack.executor.numerics import (
    MODES,
    bitlinear,
    bitlinear_q8_0,
    bitlinear_q8k,
    quantize_activations,
    quantize_q8_0,
    quantize_q8k,
    tq_lane_order,
)
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.open import open_model

F32 = np.float32
MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def reference_bitlinear(x, codes, scale, n, f32_scale=False):
    q, s_x = quantize_activations(x, n, f32_scale)
    if np.ndim(scale) == 0:
        return (((q @ codes.T) / s_x) * F32(scale)).astype(F32)
    width = codes.shape[1] // scale.shape[1]
    out = np.zeros((x.shape[0], codes.shape[0]), dtype=F32)
    for b in range(scale.shape[1]):
        part = q[:, b * width : (b + 1) * width] @ codes[:, b * width : (b + 1) * width].T
        out += (part * scale[:, b]).astype(F32)
    return (out / s_x).astype(F32)


def reference_q8k(x, codes, block_scale, after):
    """ggml_vec_dot_tq2_0_q8_K's x86 AVX2 loop written out per output: the stored digit c = t + 1
    times q summed per int32 lane j (block columns e with (e % 32) // 4 == j), minus the lane's
    two Q8_K bsums (columns 32j..32j+31), then a fused multiply-add into lane j's float32
    accumulator per block, and hsum_float_8's order at the end."""
    q, d = quantize_q8k(x)
    digits, qi = (codes + 1).astype(np.int64), q.astype(np.int64)
    lane = (np.arange(256) % 32) // 4
    sumf = [np.zeros((x.shape[0], codes.shape[0]), dtype=F32) for _ in range(8)]
    for b in range(codes.shape[1] // 256):
        cols = slice(b * 256, (b + 1) * 256)
        bsums = qi[:, cols].reshape(-1, 16, 16).sum(axis=-1)
        d_w = block_scale[:, b][None, :] if np.ndim(block_scale) else F32(block_scale)
        scale = (d_w * d[:, b : b + 1]).astype(F32)
        for j in range(8):
            mine = lane == j
            lane_sum = qi[:, cols][:, mine] @ digits[:, cols][:, mine].T - (bsums[:, 2 * j] + bsums[:, 2 * j + 1])[:, None]
            sumf[j] = (lane_sum * scale.astype(np.float64) + sumf[j].astype(np.float64)).astype(F32)  # one rounding
    s = sumf
    out = (((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))).astype(F32)
    return out if after is None else (out * after).astype(F32)


def reference_q8_0(x, codes, group_scale):
    q, d = quantize_q8_0(x)
    m, k = codes.shape
    per = k // group_scale.shape[1] // 32
    s = np.einsum("tbj,mbj->tmb", q, codes.reshape(m, -1, 32).astype(F32), optimize=True)
    terms = (s * d[:, None, :]).astype(F32).reshape(x.shape[0], m, -1, per)
    acc = terms[..., 0].copy()
    for j in range(1, per):
        acc = (acc + terms[..., j]).astype(F32)
    out = np.zeros((x.shape[0], m), dtype=F32)
    for i in range(group_scale.shape[1]):
        out = (out + group_scale[:, i][None, :] * acc[:, :, i]).astype(F32)
    return out


def case(seed, t=7, m=48, k=1024):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((t, k)) * rng.lognormal(0, 2, (t, 1))).astype(F32)
    x[0, :256] = 0  # a zero Q8_K block (d = 0) and zero Q8_0 blocks
    x[1, 5] = -x[1].__abs__().max() * 2  # a negative largest value
    codes = rng.integers(-1, 2, (m, k)).astype(F32)
    codes[3] = 0  # an all-zero row: signed zeros in the sums
    return rng, x, codes


def same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_bitlinear_scales_equal_the_block_loop(seed, mode):
    rng, x, codes = case(seed)
    n = MODES[mode]
    for scale in (F32(0.75), rng.uniform(0.5, 2, (48, 1)).astype(F32), rng.uniform(0.5, 2, (48, 8)).astype(F32),
                  rng.uniform(0.5, 2, (48, 32)).astype(F32)):
        for f32_scale in (False, True):
            same(bitlinear(x, codes, scale, n, f32_scale), reference_bitlinear(x, codes, scale, n, f32_scale))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("token_block", [None, 2])  # None: every token in one block
def test_q8k_equals_the_block_loop(seed, token_block, monkeypatch):
    from bitpack.executor import numerics

    if token_block is not None:  # 7 tokens in blocks of 2: the per-token sums must not notice
        monkeypatch.setattr(numerics, "Q8K_LANES", token_block * 8 * 4 * 48)
    rng, x, codes = case(seed)
    for block_scale, after in ((F32(1), F32(0.8125)), (F32(np.float16(0.3)), None),
                               (rng.uniform(0.1, 1, (48, 4)).astype(F32), None)):
        in_lanes = tq_lane_order(codes.astype(np.int8)).astype(F32)
        same(bitlinear_q8k(x, in_lanes, block_scale, after), reference_q8k(x, codes, block_scale, after))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("group", [32, 64, 128, 256])
def test_q8_0_equals_the_block_loop(seed, group):
    rng, x, codes = case(seed)
    scale = rng.uniform(0.1, 1, (48, 1024 // group)).astype(F32)
    same(bitlinear_q8_0(x, codes, scale), reference_q8_0(x, codes, scale))


def test_reused_code_buffer_gives_the_same_logits_twice(tmp_path):
    """One executor, two forward passes (the float32 code buffer reused across projections
    and calls), equals a fresh executor's pass, in every mode."""
    path = tmp_path / "tq2_0.gguf"
    convert(MODELS / "bitnet-f32-sharded", "tq2_0", ConvertOptions(output=path))
    for mode in sorted(MODES):
        ex = executor(open_model(path), mode)
        first = ex.forward([1, 5, 42, 7])
        same(ex.forward([1, 5, 42, 7]), first)
        same(executor(open_model(path), mode).forward([1, 5, 42, 7]), first)


def test_kept_codes_give_the_same_logits(tmp_path):
    """keep_codes: the second forward pass reads the kept codes instead of decoding again."""
    path = tmp_path / "i2_s.gguf"
    convert(MODELS / "b158-bf16", "i2_s", ConvertOptions(output=path))
    for mode in sorted(MODES):
        fresh = executor(open_model(path), mode).forward([3, 1, 4, 1, 5])
        ex = Executor(open_model(path), mode, keep_codes=True)
        same(ex.forward([3, 1, 4, 1, 5]), fresh)
        assert ex._kept and all(t.codes.dtype == np.int8 for t in ex._kept.values())
        same(ex.forward([3, 1, 4, 1, 5]), fresh)


@pytest.mark.parametrize("source, codec", [("bitnet-f32-sharded", "tq2_0"), ("b158-bf16", "i2_s")])
def test_codes_kept_as_float32_give_the_same_logits(tmp_path, source, codec):
    """keep_codes="float32": the kept codes are the BLAS input itself, read only; every mode
    gives the fresh executor's logits, on the first pass and the warm one."""
    path = tmp_path / f"{codec}.gguf"
    convert(MODELS / source, codec, ConvertOptions(output=path))
    for mode in sorted(MODES):
        fresh = executor(open_model(path), mode).forward([3, 1, 4, 1, 5])
        ex = Executor(open_model(path), mode, keep_codes="float32")
        same(ex.forward([3, 1, 4, 1, 5]), fresh)
        assert ex._kept and all(t.codes.dtype == np.float32 for t in ex._kept.values())
        same(ex.forward([3, 1, 4, 1, 5]), fresh)


def test_kept_float32_codes_of_a_weight_only_model_are_never_scaled_in_place(qwen3):
    """A weight-only projection forms W = s x t in place: never in the kept codes."""
    path = qwen3["qwen3-untied-Q2_0-legacy"]
    fresh = executor(open_model(path)).forward([3, 1, 4])
    ex = Executor(open_model(path), keep_codes="float32")
    same(ex.forward([3, 1, 4]), fresh)
    same(ex.forward([3, 1, 4]), fresh)


@pytest.mark.parametrize("source, own_scale", [("b158-packed", False), ("llama-packed", True)])
def test_kept_codes_in_hf_numerics_keep_a_packed_checkpoints_own_weight_scale(source, own_scale):
    """hf numerics divide by a bitlinear checkpoint's own bf16 weight_scale
    (Ternary.source_weight_scale; autobitlinear has none): the kept weight carries it."""
    fresh = executor(open_model(MODELS / source), "hf").forward([3, 1, 4, 1, 5])
    ex = executor(open_model(MODELS / source), "hf", keep_codes=True)
    same(ex.forward([3, 1, 4, 1, 5]), fresh)
    assert ex._kept and all((t.source_weight_scale is not None) == own_scale for t in ex._kept.values())
    same(ex.forward([3, 1, 4, 1, 5]), fresh)


def test_ggml_expf_stays_within_ggmls_error_and_saturates_quietly():
    """ggml_expf (the AVX2 ggml_v_expf the llamacpp mode's SiLU and softmax use) is within the
    error ggml documents for it (1.45 ulp plus 0.5 ulp of rounding: measured 1.85) of e**x, exact at 0, and flushes to 0 / inf beyond the float32 range
    without a NumPy warning (the suite turns warnings into failures)."""
    from bitpack.executor.numerics import ggml_expf, ggml_silu

    x = np.linspace(-87, 88, 400_001, dtype=F32)
    got, true = ggml_expf(x).astype(np.float64), np.exp(x.astype(np.float64))
    ulp = np.spacing(true.astype(F32)).astype(np.float64)
    assert (np.abs(got - true) <= 1.95 * ulp).all()
    assert (got != np.exp(x).astype(np.float64)).any()  # not libm's exp: the mode would be pointless
    assert ggml_expf(F32(0)) == 1
    extremes = ggml_expf(np.array([-1000, -200, -104, 89, 200, 1000], dtype=F32))
    assert (extremes[:3] == 0).all() and np.isinf(extremes[3:]).all()
    assert np.array_equal(ggml_silu(np.array([-1000, 0, 1000], dtype=F32)), np.array([-0.0, 0, 1000], dtype=F32))


def test_lane_matmul_is_tinyblas_lane_order_in_any_row_blocks(monkeypatch):
    """lane_matmul (llamacpp numerics' F16 attention products) equals tinyBLAS's loop written out
    per output (lane k % 8 adds its products in k order, hsum_float_8 at the end), bit for bit,
    whether the rows go in one block or many."""
    from bitpack.executor import numerics

    rng = np.random.default_rng(7)
    a = rng.standard_normal((2, 5, 21)).astype(np.float16).astype(F32)  # K = 21: zero-padded to 24
    b = rng.standard_normal((2, 21, 3)).astype(np.float16).astype(F32)
    want = np.empty((2, 5, 3), dtype=F32)
    for h, i, j in np.ndindex(want.shape):
        lanes = np.zeros(8, dtype=F32)
        for k in range(21):
            lanes[k % 8] = F32(lanes[k % 8] + a[h, i, k] * b[h, k, j])
        want[h, i, j] = F32(F32(F32(lanes[0] + lanes[4]) + F32(lanes[2] + lanes[6]))
                            + F32(F32(lanes[1] + lanes[5]) + F32(lanes[3] + lanes[7])))
    same(numerics.lane_matmul(a, b), want)
    monkeypatch.setattr(numerics, "LANE_CHUNK", 8)
    same(numerics.lane_matmul(a, b), want)
