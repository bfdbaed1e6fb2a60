"""iq2_bn: ik_llama.cpp IQ2_BN, GGML type 135 (formats/iq2_bn.md). IQ2Facts is shared with
test_codecs_iq2_bn_r4.py."""

import numpy as np
import pytest
from codec_suite import (
    POSITIVE_F32,
    CodecSuite,
    Golden2026Checks,
    RowScaleChecks,
    TwoBitChecks,
    make_ternary,
)
from hypothesis import strategies as st

from bitpack.codecs import get_codec


class IQ2Facts(TwoBitChecks, RowScaleChecks, Golden2026Checks):
    scale_dtype = "f32"
    scales = POSITIVE_F32
    large_shape = (260, 4032)
    known_sizes = {(2560, 2560): 1_648_640, (4, 64): 80}

    def expected_nbytes(self, m, k):
        return m * (4 + 16 * k // 64)

    def code_bytes(self, m, k):
        at = np.arange(self.expected_nbytes(m, k))
        return at[~np.isin(at, self.scale_offsets(m, k)[:, None] + np.arange(4))]

    def test_0x55_is_all_zero(self, example_shape):
        """ik writes an all-zero row as codes +1 (0xAA) with scale 0 (formats-2026 §7.2);
        0x55 bytes (codes 0) under a nonzero scale decode to zeros with scale +0."""
        codec = self.codec()
        m, k = example_shape
        out = codec.encode(make_ternary(example_shape, "zeros"), self.good_scale).reshape(-1)
        assert (out[self.code_bytes(m, k)] == 0xAA).all()
        assert not self.stored_scales(out, m, k).any()
        out[self.code_bytes(m, k)] = 0x55
        for r in range(m):
            self.write_scale(out, m, k, r, 0.75)
        got, scale = codec.decode(out, example_shape)
        assert not got.any() and not scale.any()

    @pytest.mark.parametrize("scale", [np.float32(0.1), np.float32(3.4028235e38), np.float32(1e-45),
                                       np.float32(1 + 2**-23), np.float32(0.00331497)], ids=repr)
    def test_any_positive_f32_scale_kept(self, scale):
        codec = self.codec()
        t = make_ternary((4, 128), "random", 50)
        got, got_s = codec.decode(codec.encode(t, scale), (4, 128))
        np.testing.assert_array_equal(got, t)
        assert (got_s == scale).all()


class TestIQ2_BN(IQ2Facts, CodecSuite):
    name = "iq2_bn"
    golden = ("iq2_bn",)
    shapes = st.tuples(st.integers(1, 6), st.integers(1, 4).map(lambda n: 64 * n))
    example_shapes = [(1, 64), (3, 192), (8, 512)]
    refused = [((1, 32), "K = 32 is not a multiple of 64"), ((2, 100), "K = 100 is not a multiple of 64")]

    def scale_offsets(self, m, k):
        return np.arange(m) * (4 + 16 * k // 64)


def test_worked_example_iq2_bn():
    """formats/iq2_bn.md worked example, from iq2_bn_edge_8x256 row 1 and row 3."""
    from codec_suite import GOLDEN_2026

    with np.load(GOLDEN_2026 / "iq2_bn_edge_8x256.npz") as z:
        codes, scales = z["codes"], z["scales"]
    out = get_codec("iq2_bn").encode(codes, scales).reshape(8, 68)
    assert out[1, :4].tobytes() == bytes.fromhex("00 40 59 3B")
    assert out[1, 4:11].tobytes() == bytes.fromhex("55 55 55 55 55 56 55")
    assert out[1, 4 + 16 + 15] == 0x15
    assert out[3].tobytes() == bytes(4) + b"\xAA" * 64
