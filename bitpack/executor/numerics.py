"""The rounding points of each numerics mode (spec/architectures.md §6), as small functions.

``exact`` is bitpack's own definition and the basis of "identical logits": everything in
float32, BitLinear with per-token absmax int8 activations and an exact integer matmul
(float32 BLAS on integers below 2**24 is exact, §8). ``bitnetcpp`` reproduces bitnet.cpp's
CPU path for I2_S and TL2 (§6.3a, §9.1): double-precision maxima and norm sums, float16 V
cache, and in token-by-token decoding float16 attention probabilities. ``llamacpp`` reproduces
the CPU path of llama.cpp's x86 AVX2 build (architectures.md §9, qwen3.md §6): Q8_K / Q8_0
activations inside the matmul, float16 K, V and probabilities, and the build's float order
where it decides bits (the TQ kernels' lanes, ggml_expf, fused multiply-adds, tinyBLAS lanes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32
MAX_EXACT_K = 2**24 // 128  # longest row whose int8 x ternary sums float32 holds exactly


@dataclass(frozen=True)
class Numerics:
    name: str
    double_sums: bool = False  # RMSNorm sums and activation maxima in float64 (ggml)
    scale_in_double: bool = False  # activation scale 127/m computed in float64, stored as float32
    f16_values: bool = False  # V cache stored as float16
    f16_probabilities: bool = False  # attention probabilities rounded to float16 (token-by-token)
    f16_keys: bool = False  # K cache (and Q for the K.Q product) as float16 (llama.cpp's default)
    runtime: str | None = None  # whose kernels: a codec's activation_quant is looked up by it
    head_in_weight_dtype: bool = False  # the head's input rounded to the head weight's dtype (ggml)
    ggml_rope: bool = False  # RoPE angles by ggml's repeated multiplication (rope_tables_ggml)
    # llama.cpp's x86 AVX2+FMA build (the one CI compiles): the TQ dot in 8 float lanes, ggml_expf
    # in SiLU and softmax, the fused RoPE rotation, tinyBLAS's 8 lanes in the F16 attention products
    avx2_kernels: bool = False


MODES = {
    "exact": Numerics("exact"),
    "bitnetcpp": Numerics("bitnetcpp", double_sums=True, scale_in_double=True, f16_values=True,
                          runtime="bitnet.cpp"),
    "bitnetcpp-seq": Numerics("bitnetcpp-seq", double_sums=True, scale_in_double=True, f16_values=True,
                              f16_probabilities=True, runtime="bitnet.cpp"),
    "llamacpp": Numerics("llamacpp", double_sums=True, f16_values=True, f16_probabilities=True, f16_keys=True,
                         head_in_weight_dtype=True, ggml_rope=True, avx2_kernels=True, runtime="llama.cpp"),
}


def quantize_q8k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's Q8_K per 256-value block (architectures.md §9.1): v is the signed element of
    largest magnitude (the first on ties), iscale = -127/v, q = min(127, rint(iscale*x)),
    d = 1/iscale; a block of zeros has d = 0. Returns q [T, K] and d [T, K/256]."""
    t, k = x.shape
    blocks = x.reshape(t, k // 256, 256)
    where = np.abs(blocks).argmax(axis=-1)  # first index of the largest magnitude
    v = np.take_along_axis(blocks, where[..., None], axis=-1)[..., 0]
    zero = v == 0
    iscale = np.where(zero, F32(0), F32(-127) / np.where(zero, F32(1), v)).astype(F32)
    q = np.minimum(F32(127), np.rint(blocks * iscale[..., None])).astype(F32)
    d = np.where(zero, F32(0), F32(1) / np.where(zero, F32(1), iscale)).astype(F32)
    return q.reshape(t, k), d


Q8K_LANES = 1 << 24  # lane sums per token block of bitlinear_q8k (64 MB of float32)


def bitlinear_q8k(x: np.ndarray, codes: np.ndarray, block_scale, after: np.float32 | None) -> np.ndarray:
    """A TQ1_0/TQ2_0 matmul as ggml's x86 AVX2 kernels compute it (``ggml_vec_dot_tq{1,2}_0_q8_K``
    in arch/x86/quants.c), for ``codes`` in lane order (tq_lane_order): every 256-block's
    integer sum is split over 8 int32 lanes, each lane is multiplied by f32(d_w * d_x) and
    added into its own float32 accumulator with one fused multiply-add per block, and the 8
    accumulators are summed at the end (hsum8). Then the optional per-tensor ``.scale`` multiply.
    Tokens go a block at a time (every token's sums are its own), so a long prompt holds at most
    Q8K_LANES lane sums."""
    tokens = max(1, Q8K_LANES // (8 * (x.shape[1] // 256) * codes.shape[0]))
    if x.shape[0] > tokens:
        return np.concatenate([bitlinear_q8k(x[lo : lo + tokens], codes, block_scale, after)
                               for lo in range(0, x.shape[0], tokens)])
    q, d = quantize_q8k(x)
    lanes = tq_lane_sums(q, codes)  # [B, 8, T, M], exact integers
    d_w = block_scale.T[:, None, :] if np.ndim(block_scale) else F32(block_scale)  # [B, 1, M] or a scalar
    scales = (d_w * d.T[:, :, None]).astype(F32)  # f32(d_w * d_x): [B, T, M] or [B, T, 1]
    acc = np.zeros(lanes.shape[1:], dtype=F32)  # [8, T, M]
    fused = np.empty(acc.shape, dtype=np.float64)
    for lane_sums, scale in zip(lanes, scales.astype(np.float64)):  # block order
        np.multiply(lane_sums, scale, out=fused)  # exact: 15 x 24 bits
        np.add(fused, acc, out=acc, dtype=np.float64, casting="same_kind")  # rounded once: the fused multiply-add
    out = hsum8(np.moveaxis(acc, 0, -1))
    return out if after is None else (out * after).astype(F32)


def tq_lane_order(codes: np.ndarray) -> np.ndarray:
    """int8 codes [M, K] with each 256-block's columns regrouped by the x86 TQ kernels' int32
    lane: both kernels load the digit of block column e into byte e % 32 of a register, so lane
    j holds the 32 columns e = 32a + 4j + r (a < 8, r < 4); the new order is (j, a, r). Each run
    of 4 columns moves as one 32-bit word."""
    m, k = codes.shape
    words = np.ascontiguousarray(codes, dtype=np.int8).view(np.uint32).reshape(m, k // 256, 8, 8)
    return np.ascontiguousarray(words.transpose(0, 1, 3, 2)).view(np.int8).reshape(m, k)


def tq_lane_sums(q: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The x86 TQ kernels' integer lane sums, [K/256, 8, T, M], for q [T, K] and codes [M, K] in
    lane order. A kernel adds the digit c = t + 1 times q over its lane's 32 columns and then
    subtracts the Q8_K bsums of columns 32j..32j+31 (which is how the +1 cancels), so lane j is
    the sum of t·q over its columns plus (its columns' q sum - the q sum of columns 32j..32j+31)."""
    t, k = q.shape
    m, blocks = codes.shape[0], k // 256
    lane_q = np.ascontiguousarray(q.reshape(t, blocks, 8, 8, 4).transpose(0, 1, 3, 2, 4)).reshape(t, k)
    sums = block_sums(lane_q, codes, 32).reshape(blocks, 8, t, m)
    lane_q_sums = lane_q.reshape(t, blocks, 8, 32).sum(axis=-1)
    run_sums = q.reshape(t, blocks, 8, 32).sum(axis=-1)  # each lane's pair of bsums
    sums += (lane_q_sums - run_sums).transpose(1, 2, 0)[..., None]  # exact: |values| < 2**15
    return sums


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """f32(a·b + c) rounded once, as a fused multiply-add: a float32 product is exact in float64
    and the float64 sum is rounded to float32. (A true FMA can differ only when that float64 sum is
    itself inexact and lands on a float32 tie, a case of probability about 2**-29 per operation.)"""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(F32)


def hsum8(x: np.ndarray) -> np.ndarray:
    """x[..., 8] summed as ggml's hsum_float_8: ((x0 + x4) + (x2 + x6)) + ((x1 + x5) + (x3 + x7)) in float32."""
    pairs = (x[..., 4:8] + x[..., 0:4]).astype(F32)
    halves = (pairs[..., 0:2] + pairs[..., 2:4]).astype(F32)
    return (halves[..., 0] + halves[..., 1]).astype(F32)


LANE_CHUNK = 1 << 21  # lane accumulators per row block of lane_matmul (8 MB of float32)


def lane_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b ([..., M, K] times [..., K, N]) as llama.cpp's F16 matmul (llamafile's tinyBLAS,
    AVX2) sums it: column k of the inner dimension goes to float32 lane k % 8, each lane adds
    its products in k order, and hsum8 adds the lanes. The inputs hold float16 values, so every
    product is exact in float32 and a fused multiply-add is a plain float32 add. Rows go a
    block at a time, so a long prompt's attention never holds more than LANE_CHUNK lanes."""
    k = a.shape[-1]
    steps = -(-k // 8)
    pad = steps * 8 - k  # the kernel's zero padding (KV cells past the last token)
    a8 = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]).reshape(*a.shape[:-1], steps, 8)
    b8 = np.pad(np.swapaxes(b, -1, -2), [(0, 0)] * (b.ndim - 1) + [(0, pad)])
    b8 = b8.reshape(*b8.shape[:-1], steps, 8)  # [..., N, steps, 8]
    batch, m, n = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]
    out = np.empty((*batch, m, n), dtype=F32)
    rows = max(1, LANE_CHUNK // max(1, math.prod(batch) * n * 8))
    for lo in range(0, m, rows):
        hi = min(m, lo + rows)
        acc = np.zeros((*batch, hi - lo, n, 8), dtype=F32)
        product = np.empty_like(acc)
        for s in range(steps):
            np.multiply(a8[..., lo:hi, None, s, :], b8[..., None, :, s, :], out=product)
            acc += product
        out[..., lo:hi, :] = hsum8(acc)
    return out


def _f32(hex_literal: str) -> np.float32:
    return F32(float.fromhex(hex_literal))


# ggml_v_expf's constants (ggml-cpu/vec.h, from Arm's optimized routines)
_SHIFT, _LOG2E = _f32("0x1.8p23"), _f32("0x1.715476p+0")
_LN2_HI, _LN2_LO = _f32("0x1.62e4p-1"), _f32("0x1.7f7d1cp-20")
_P = [_f32(v) for v in ("0x1.0e4020p-7", "0x1.573e2ep-5", "0x1.555e66p-3", "0x1.fffdb6p-2", "0x1.ffffecp-1")]
_ONE_BITS = np.uint32(0x3F800000)  # the bits of 1.0f


def ggml_expf(x: np.ndarray) -> np.ndarray:
    """e**x as ggml's AVX2 ``ggml_v_expf`` computes it in float32 (within 1.95 ulp of the true
    value, not always the correctly rounded one): x = n·ln2 + b with n = rint(x·log2 e), 2**n
    built in the exponent bits, e**b by a degree-5 polynomial, every step one float32 rounding
    or one fused multiply-add; |n| > 126 takes the scaled path, |n| > 192 over- or underflows."""
    x = np.asarray(x, dtype=F32)
    z = fma32(x, _LOG2E, _SHIFT)
    n = (z - _SHIFT).astype(F32)
    b = fma32(-n, _LN2_LO, fma32(-n, _LN2_HI, x))
    e = z.view(np.uint32) << np.uint32(23)  # n's low bits into the exponent field (wrapping)
    k = (e + _ONE_BITS).view(F32)
    u = (b * b).astype(F32)
    j = fma32(fma32(fma32(_P[0], b, _P[1]), u, fma32(_P[2], b, _P[3])), u, (_P[4] * b).astype(F32))
    out = fma32(j, k, k)
    big = np.abs(n) > F32(126)
    if big.any():  # outside [-126, 126] octaves: 2**n split in two factors, or flushed
        g = np.where(n <= 0, np.uint32(0x82000000), np.uint32(0))
        s1 = (g + np.uint32(0x7F000000)).view(F32)
        s2 = (e - g).view(F32)
        with np.errstate(over="ignore", under="ignore"):
            scaled = (fma32(s2, j, s2) * s1).astype(F32)
            flushed = (s1 * s1).astype(F32)
        out = np.where(np.abs(n) > F32(192), flushed, np.where(big, scaled, out))
    return out


def ggml_silu(x: np.ndarray) -> np.ndarray:
    """x / (1 + e**-x) with ggml_expf, as ggml's AVX2 ``ggml_v_silu`` (llama.cpp's SwiGLU)."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore"):
        return (x / (F32(1) + ggml_expf((F32(0) - x).astype(F32)))).astype(F32)


def block_sums(q: np.ndarray, codes: np.ndarray, width: int) -> np.ndarray:
    """The exact integer sums of q [T, K] and codes [M, K] (float32 integers) over each run of
    ``width`` columns: [K/width, T, M]. One batched BLAS call over views (§8: exact in any order)."""
    t, k = q.shape
    blocks = np.ascontiguousarray(q.reshape(t, k // width, width).transpose(1, 0, 2))  # [B, T, w]
    return np.matmul(blocks, codes.reshape(codes.shape[0], k // width, width).transpose(1, 2, 0))


def in_order_sum(terms: np.ndarray) -> np.ndarray:
    """sum_b terms[b] in float32, left to right from a zero start (the kernels' block order)."""
    out = np.zeros(terms.shape[1:], dtype=F32)
    for term in terms:  # [B] vector adds; the matmuls are done
        out += term
    return out


def quantize_q8_0(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's Q8_0 activations per 32 values as the x86 AVX2 build computes them
    (qwen3.md §6.1): id = 127/amax in f32 (0 for a zero block), q = round-half-even(x*id),
    and the block scale D = f16(amax/127). Returns q [T, K/32, 32] and D [T, K/32] in f32."""
    blocks = x.reshape(x.shape[0], -1, 32).astype(F32)
    amax = np.abs(blocks).max(axis=-1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, F32(127) / amax, F32(0)).astype(F32)
    q = np.rint(blocks * inv[..., None]).astype(F32)
    d = (amax / F32(127)).astype(np.float16).astype(F32)
    return q, d


def bitlinear_q8_0(x: np.ndarray, codes: np.ndarray, group_scale: np.ndarray) -> np.ndarray:
    """A Q2_0 / Q1_0 / PQ2_0 matmul as llama.cpp's generic CPU kernel computes it (qwen3.md §6.2):
    per weight group i, acc = sum over its Q8_0 blocks k of D_k * S_k (exact integer S_k,
    f32 arithmetic), then sum += d_i * acc in group order. ``group_scale`` is (M, K/g)."""
    q, d = quantize_q8_0(x)  # [T, B, 32], [T, B]
    m, k = codes.shape
    per = k // group_scale.shape[1] // 32  # Q8_0 blocks per weight group
    s = block_sums(q.reshape(x.shape[0], k), codes, 32)  # [B, T, M], exact integers
    terms = (s * d.T[:, :, None]).astype(F32).reshape(-1, per, x.shape[0], m)  # [G, per, T, M]
    acc = terms[:, 0].copy()
    for j in range(1, per):
        acc += terms[:, j]
    return in_order_sum(acc * group_scale.T[:, None, :])


def silu(gate: np.ndarray) -> np.ndarray:
    """x / (1 + e^-x) in float32. For x below about -88, e^-x overflows to inf and the result
    is the correct -0: NumPy's overflow warning would only print a Python warning at the user."""
    with np.errstate(over="ignore"):
        return gate / (F32(1) + np.exp(-gate))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, n: Numerics) -> np.ndarray:
    if n.double_sums:  # ggml: float32 squares summed in double, the mean rounded to float32, + eps in float32
        mean = ((x * x).astype(np.float64).sum(axis=-1, keepdims=True) / x.shape[-1]).astype(F32)
        scale = (F32(1) / np.sqrt(mean + F32(eps))).astype(F32)
    else:
        mean = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
        scale = F32(1) / np.sqrt(mean + F32(eps))
    return (x * scale) * weight


ABSMAX_FLOOR = F32(1e-5)  # per-token absmax clamp before 127/m (BitNet's activation_quant)


def token_absmax(x: np.ndarray) -> np.ndarray:
    """m: each token's largest magnitude, floored at ABSMAX_FLOOR (float32, keepdims)."""
    return np.maximum(np.abs(x).max(axis=-1, keepdims=True), ABSMAX_FLOOR)


def reciprocal_scale(m: np.ndarray) -> np.ndarray:
    """127/m as transformers lowers it, (1/m)*127 in float32 (architectures.md §7.2); rounding
    the result (float32, bf16) is the caller's."""
    return (F32(1) / m) * F32(127)


def quantize_activations(x: np.ndarray, n: Numerics, f32_scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8 (held as float32 integers) and the activation scale s_x;
    ``f32_scale``: the weight type's kernels compute 127/m in float32 (bitnet.cpp's TL2)."""
    m = token_absmax(x)
    if n.scale_in_double and not f32_scale:
        s = 127.0 / m.astype(np.float64)
        q = np.clip(np.rint(x.astype(np.float64) * s), -128, 127).astype(F32)
        return q, s.astype(F32)
    if n.scale_in_double:  # bitnet.cpp's TL2 path: 127/m in float32
        s_x = (F32(127) / m).astype(F32)
    else:  # bitpack's exact mode: the reciprocal form transformers uses (architectures.md §7.2)
        s_x = reciprocal_scale(m).astype(F32)
    return np.clip(np.rint(x * s_x), -128, 127).astype(F32), s_x


def bitlinear(x: np.ndarray, codes: np.ndarray, scale, n: Numerics, f32_scale: bool = False) -> np.ndarray:
    """y = s * (q . t) / s_x for x [T, K] and codes [M, K] (float32 copies of -1/0/+1)."""
    k = codes.shape[1]
    if k > MAX_EXACT_K:
        raise ValueError(f"row length {k} exceeds the exact float32 range ({MAX_EXACT_K})")
    q, s_x = quantize_activations(x, n, f32_scale)
    if np.ndim(scale) == 0:
        acc = q @ codes.T  # exact integers
        return ((acc / s_x) * F32(scale)).astype(F32)
    # per-row or per-group scales that differ: sum the scaled groups in order (§6.1)
    parts = block_sums(q, codes, k // scale.shape[1])  # [G, T, M], exact integers
    return (in_order_sum(parts * scale.T[:, None, :]) / s_x).astype(F32)


def rope_tables(positions: np.ndarray, head_dim: int, base: float,
                scaling: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, d/2] as transformers builds them (qwen3.md §4, §5): inverse frequencies
    theta_i = 1 / base**(2i/d) in float32, divided by the factor (linear) or mixed on a ramp
    (YaRN), angles in float32, cos/sin in float64 -> float32, times YaRN's attention factor."""
    i = np.arange(head_dim // 2, dtype=F32)
    theta = (F32(1) / np.power(F32(base), (F32(2) * i) / F32(head_dim))).astype(F32)
    m = F32(1)
    if scaling is not None:
        s = F32(scaling["factor"])
        if scaling["type"] == "linear":
            theta = (theta / s).astype(F32)
        else:  # yarn: pairs below `low` keep theta, above `high` use theta / s
            low, high = _yarn_range(head_dim, scaling["original_context_length"], base, np.log)
            ramp = np.clip((np.arange(head_dim // 2, dtype=F32) - F32(low)) / F32(high - low if high > low
                                                                                 else 0.001), 0, 1).astype(F32)
            keep = (F32(1) - ramp).astype(F32)  # transformers' inv_freq_extrapolation_factor
            theta = ((theta / s) * (F32(1) - keep) + theta * keep).astype(F32)
            m = F32(F32(0.1) * F32(np.log(s)) + F32(1)) * F32(scaling.get("attn_factor", 1.0)) if s > 1 else F32(1)
    angles = (positions.astype(F32)[:, None] * theta[None, :]).astype(F32)
    cos, sin = np.cos(angles.astype(np.float64)).astype(F32), np.sin(angles.astype(np.float64)).astype(F32)
    return (cos * m, sin * m) if m != 1 else (cos, sin)


def rope_tables_ggml(positions: np.ndarray, head_dim: int, base: float,
                     scaling: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, d/2] as ggml's rope cache builds them (qwen3.md §4, §5.3): each pair's angle
    by repeated float32 multiplication by base**(-2/d) from theta = p; YaRN mixes the angles
    and multiplies cos and sin by (1 + 0.1 ln s) x attn_factor."""
    half = head_dim // 2
    step = F32(np.power(F32(base), F32(-2.0) / F32(head_dim)))
    extrap = np.empty((positions.size, half), dtype=F32)
    theta = positions.astype(F32)
    for i in range(half):
        extrap[:, i] = theta
        theta = (theta * step).astype(F32)
    angles, m = extrap, F32(1)
    if scaling is not None:
        freq_scale = F32(F32(1) / F32(scaling["factor"]))
        interp = (extrap * freq_scale).astype(F32)
        angles = interp
        if scaling["type"] == "yarn":  # ext_factor 1
            low, high = _yarn_range(head_dim, scaling["original_context_length"], base, lambda v: np.log(F32(v)))
            y = (np.arange(half, dtype=F32) - F32(low)) / F32(max(0.001, high - low))
            mix = (F32(1) - np.minimum(F32(1), np.maximum(F32(0), y))).astype(F32)
            angles = (interp * (F32(1) - mix) + extrap * mix).astype(F32)
            m = F32(F32(scaling.get("attn_factor", 1.0)) * F32(F32(1) + F32(0.1) * F32(np.log(F32(1) / freq_scale))))
    cos, sin = np.cos(angles.astype(np.float64)).astype(F32), np.sin(angles.astype(np.float64)).astype(F32)
    return (cos * m, sin * m) if m != 1 else (cos, sin)


def _yarn_range(d: int, original: int, base: float, log) -> tuple[int, int]:
    """YaRN's correction range [low, high] of pair indices for beta 32 and 1 (qwen3.md §5.3)."""
    def corr(beta: float) -> float:
        return float(d * log(original / (beta * 2 * np.pi)) / (2 * log(base)))

    return max(0, int(np.floor(corr(32.0)))), min(d - 1, int(np.ceil(corr(1.0))))


def rope_neox(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, fused: bool = False) -> np.ndarray:
    """Rotate-half RoPE on x [heads, T, d]. ``fused``: as the x86 build of ggml's rotate_pairs
    compiles x0·cos - x1·sin and x0·sin + x1·cos, the first product fused with the sum
    (fma(x0, cos, -(x1·sin)), fma(x0, sin, x1·cos)); measured bit-exact against llama.cpp."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    if fused:
        return np.concatenate([fma32(a, cos, -(b * sin)), fma32(a, sin, (b * cos).astype(F32))], axis=-1)
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1).astype(F32)


def softmax(scores: np.ndarray, n: Numerics) -> np.ndarray:
    scores = scores - scores.max(axis=-1, keepdims=True)
    if n.avx2_kernels:  # ggml_vec_soft_max_f32: ggml_expf, each run of 8 summed by hsum8, in double
        masked = np.isneginf(scores)
        e = np.where(masked, F32(0), ggml_expf(np.where(masked, F32(0), scores)))
        width = -(-e.shape[-1] // 8) * 8  # the KV cells past the last token are masked: zeros
        runs = np.zeros((*e.shape[:-1], width), dtype=F32)
        runs[..., : e.shape[-1]] = e
        total = hsum8(runs.reshape(*e.shape[:-1], width // 8, 8)).astype(np.float64).sum(axis=-1, keepdims=True)
        p = e * (1.0 / total).astype(F32)
    elif n.double_sums:
        e = np.exp(scores, dtype=F32)
        total = e.sum(axis=-1, keepdims=True, dtype=np.float64)
        p = e * (1.0 / total).astype(F32)
    else:
        e = np.exp(scores, dtype=F32)
        p = e / e.sum(axis=-1, keepdims=True, dtype=F32)
    if n.f16_probabilities:
        p = p.astype(np.float16).astype(F32)
    return p.astype(F32)
