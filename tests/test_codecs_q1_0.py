"""q1_0: mainline llama.cpp Q1_0, GGML type 41, binary, group 128 (formats/q1_0.md, formats-2026.md §1)."""

import numpy as np
import pytest
from codec_suite import (
    GOLDEN_2026,
    CodecSuite,
    Golden2026Checks,
    GroupScaleChecks,
    group_shapes,
)

from bitpack.codecs import CodecError, get_codec


def make_binary(shape, kind="random", seed=0):
    """Data Q1_0 stores: every 128-group all +-1 or all 0 ("sparse": about 1 group in 4 nonzero)."""
    rng = np.random.default_rng(seed)
    m, k = shape
    if kind == "zeros":
        return np.zeros(shape, dtype=np.int8)
    if kind == "plus":
        return np.ones(shape, dtype=np.int8)
    if kind == "minus":
        return np.full(shape, -1, dtype=np.int8)
    t = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    if kind == "sparse" and k % 128 == 0:
        t.reshape(m, -1, 128)[rng.random((m, k // 128)) >= 0.25] = 0
    return t


class TestQ1_0(GroupScaleChecks, Golden2026Checks, CodecSuite):
    name = "q1_0"
    group_size = 128
    block_bytes = 18
    d_offset = 0
    zero_block = b"\x00\x00" + b"\xff" * 16
    golden = ("q1_0",)
    binary = True
    shapes = group_shapes(128)
    example_shapes = [(1, 128), (3, 640)]
    refused = [
        ((4, 64), "K = 64 is not a multiple of 128"),
        ((2, 960), "K = 960 is not a multiple of 128"),
    ]
    known_sizes = {(2560, 2560): 921_600, (1, 128): 18}

    def ternary(self, shape, kind="random", seed=0):
        return make_binary(shape, kind, seed)

    @pytest.mark.parametrize("row,column", [(0, 0), (1, 200), (2, 639)])
    def test_group_mixing_zero_and_nonzero_refused(self, row, column):
        t = make_binary((3, 640), "random", 60)
        t[row, column] = 0
        with pytest.raises(CodecError) as err:
            self.codec().encode(t, self.good_scale)
        group = column // 128
        assert f"row {row}, group {group}" in str(err.value) and f"column {column}" in str(err.value)

    def test_sign_bits(self):
        """Bit 1 = +d, bit 0 = -d, weight j at bit j mod 8 of byte j div 8."""
        t = -np.ones((1, 128), dtype=np.int8)
        t[0, [0, 9, 127]] = 1
        out = self.codec().encode(t, np.float32(0.5)).tobytes()
        assert out[:2] == np.float16(0.5).tobytes()
        assert out[2:] == bytes([0x01, 0x02] + [0] * 13 + [0x80])


def test_type_ids():
    codec = get_codec("q1_0")
    assert codec.type_ids == {"mainline": 41, "prism": 41, "prism-legacy": 41, "bitnet-cpp-2026": 41, "ik-llama": 41}
    assert codec.file_types["mainline"] == 40 and codec.file_types["ik-llama"] == 41


def test_worked_example():
    """formats-2026.md §1: q1_0_64x256.npz, row 0, block 0."""
    raw = bytes.fromhex("4F 29 F5 D5 11 A4 EE 67 AB 46 D3 F8 77 BF 6D DF 13 AA")
    got, scales = get_codec("q1_0").decode(raw, (1, 128))
    np.testing.assert_array_equal(got[0, :16], [1, -1, 1, -1, 1, 1, 1, 1, 1, -1, 1, -1, 1, -1, 1, 1])
    assert scales[0, 0] == np.float32(np.uint16(0x294F).view(np.float16))
    assert get_codec("q1_0").encode(got, scales).tobytes() == raw


def test_edge_file():
    """The upstream edge file's rows mix zeros and nonzeros in a group: encoding them is
    refused, and the upstream bytes decode as upstream dequantizes them (zero -> +d)."""
    with np.load(GOLDEN_2026 / "q1_0_edge_8x256.npz") as z:
        codes, scales, raw = z["codes"], z["scales"], z["bytes"]
        assert not bool(z["exact"])
        with pytest.raises(CodecError, match="row 1, group 0"):
            get_codec("q1_0").encode(codes, scales)
        got, got_scales = get_codec("q1_0").decode(raw, codes.shape)
        assert (got[1, :128] == 1).all() and got_scales[1, 0] == np.float32(np.uint16(0x1458).view(np.float16))
        assert not got[3].any() and not got_scales[3].any()  # d = 0, bits 1: codes 0, scale +0
        # the rows that Q1_0 can hold (r5..r7: no zero inside a nonzero group) are written as upstream
        assert get_codec("q1_0").encode(codes[5:], scales[5:]).tobytes() == raw[5 * 36 :].tobytes()
