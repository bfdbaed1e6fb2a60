"""TQ1_0 / TQ2_0 against the PyPI gguf package (gguf.quants), an independent implementation
of llama.cpp's reference quantizer (spec/codecs.md §5.1, §6).

For canonical (t, s), bitpack's baked encoding must equal gguf's quantize(t * s) byte for
byte, gguf's dequantize must read bitpack's bytes as t * f16(s), and bitpack must decode
gguf's bytes back to t and f16(s).
"""

from __future__ import annotations

import numpy as np
import pytest
from codec_suite import make_ternary
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from hypothesis import given
from hypothesis import strategies as st

from bitpack.codecs import get_codec

pytestmark = pytest.mark.oracle

QTYPE = {"tq1_0": GGMLQuantizationType.TQ1_0, "tq2_0": GGMLQuantizationType.TQ2_0}
CODECS = list(QTYPE)

FP16_SCALES = [1.5546875, 0.0419921875, 2.0**-14, 65504.0, 1.0, 0.5, 3.0, 2.0**-15, 2.0**-24]
BF16_SCALES = [1.203125, 0.041015625, 2.5, 0.0078125, 1.5e2]  # bf16 values inside f16's range


def f16(s) -> np.float32:
    return np.float32(np.float16(np.float32(s)))


def bf16_values():
    """bf16 values (f32 with the low 16 bits zero) that f16 holds exactly (2**-14 .. 65504)."""
    return (
        st.integers(0x3880, 0x477F)
        .map(lambda hi: np.uint32(hi << 16).view(np.float32))
        .filter(lambda x: np.float32(np.float16(x)) == x)
    )


SHAPES = st.tuples(st.integers(1, 4), st.integers(1, 4).map(lambda n: 256 * n))


@st.composite
def ternary_tensors(draw):
    """Random ternary data; some draws zero whole 256-blocks or whole rows."""
    m, k = draw(SHAPES)
    t = make_ternary((m, k), draw(st.sampled_from(["random", "random", "sparse"])), draw(st.integers(0, 2**32 - 1)))
    blocks = t.reshape(m, k // 256, 256)
    zero = draw(st.lists(st.booleans(), min_size=m * (k // 256), max_size=m * (k // 256)))
    blocks[np.array(zero).reshape(m, k // 256)] = 0
    return t


def gguf_bytes(t: np.ndarray, s, name: str) -> np.ndarray:
    return quantize(t.astype(np.float32) * np.float32(s), QTYPE[name]).reshape(-1)


def gguf_values(buf: np.ndarray, shape, name: str) -> np.ndarray:
    return dequantize(buf.reshape(shape[0], -1), QTYPE[name]).reshape(shape)


@pytest.mark.parametrize("name", CODECS)
@given(t=ternary_tensors(), s=st.sampled_from(FP16_SCALES + BF16_SCALES) | bf16_values())
def test_encode_equals_gguf_quantize(name, t, s):
    s = np.float32(s)
    assert f16(s) == s  # every scale drawn here is fp16-representable
    ours = get_codec(name).encode(t, s)
    np.testing.assert_array_equal(ours, gguf_bytes(t, s, name))


@pytest.mark.parametrize("name", CODECS)
@given(t=ternary_tensors(), s=st.floats(2.0**-24, 65504.0, width=32))
def test_rounded_scale_equals_gguf_quantize_of_exact_scale(name, t, s):
    """For any f32 s, gguf's quantize(t * s) stores d = f16(s): bitpack given f32(f16(s)) agrees."""
    s = np.float32(s)
    np.testing.assert_array_equal(get_codec(name).encode(t, f16(s)), gguf_bytes(t, s, name))


@pytest.mark.parametrize("name", CODECS)
@given(t=ternary_tensors(), s=st.floats(2.0**-14, 65504.0, width=32).map(f16))
def test_gguf_dequantizes_bitpack_bytes(name, t, s):
    values = gguf_values(get_codec(name).encode(t, s), t.shape, name)
    np.testing.assert_array_equal(values, t.astype(np.float32) * s)


@pytest.mark.parametrize("name", CODECS)
@given(t=ternary_tensors(), s=st.floats(2.0**-24, 65504.0, width=32))
def test_bitpack_decodes_gguf_bytes(name, t, s):
    got, scale = get_codec(name).decode(gguf_bytes(t, np.float32(s), name), t.shape)
    np.testing.assert_array_equal(got, t)
    assert isinstance(scale, np.float32)
    assert scale == (f16(s) if t.any() else np.float32(0.0))


@pytest.mark.parametrize("name", CODECS)
@given(t=ternary_tensors())
def test_separate_mode_is_gguf_with_unit_blocks(name, t):
    """scale_mode='separate' is gguf's quantize(t), except all-zero blocks also get d = 1.0."""
    ours = get_codec(name, scale_mode="separate").encode(t, np.float32(1.0))
    theirs = gguf_bytes(t, 1.0, name).reshape(-1, ours.size // (t.size // 256))
    theirs[:, -2:] = np.frombuffer(np.float16(1.0).tobytes(), dtype=np.uint8)
    np.testing.assert_array_equal(ours, theirs.reshape(-1))
    np.testing.assert_array_equal(gguf_values(ours, t.shape, name), t.astype(np.float32))


@pytest.mark.parametrize("name", CODECS)
def test_per_block_scales_equal_gguf_per_block_amax(name):
    """Per-block d (what a tq file with differing block scales holds) matches gguf on
    t * d broadcast per block, and bitpack decodes gguf's bytes to that (M, K/256) array."""
    t = make_ternary((2, 768), "random", 3)
    d = np.array([[0.5, 1.5546875, 2.0**-14], [65504.0, 0.0419921875, 3.0]], dtype=np.float32)
    x = (t.reshape(2, 3, 256).astype(np.float32) * d[:, :, None]).reshape(2, 768)
    theirs = quantize(x, QTYPE[name]).reshape(-1)
    np.testing.assert_array_equal(get_codec(name).encode(t, d), theirs)
    got, scale = get_codec(name).decode(theirs, t.shape)
    np.testing.assert_array_equal(got, t)
    np.testing.assert_array_equal(scale, d)
