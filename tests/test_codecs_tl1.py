"""tl1: bitnet.cpp TL1, GGML type 38 (spec/codecs.md §7). Tile selection: test_tiles.py."""

import numpy as np
import pytest
from codec_suite import (
    CodecSuite,
    F32ScaleChecks,
    GGUFChecks,
    TrailerChecks,
    f32_le,
    make_ternary,
)
from hypothesis import strategies as st

from bitpack.codecs import CorruptDataError, get_codec


class TL1Facts(GGUFChecks, F32ScaleChecks, TrailerChecks):
    name = "tl1"
    known_sizes = {(2560, 2560): 1_638_432, (1088, 1056): 1088 * 1056 // 4 + 32}

    def expected_nbytes(self, m, k):
        return m * k // 4 + 32

    def trailer_offset(self, m, k):
        return m * k // 4

    def test_bits_per_weight_formula(self, example_shape):
        m, k = example_shape
        assert self.codec().bits_per_weight(example_shape) == pytest.approx(2 + 256 / (m * k))

    @pytest.mark.parametrize("byte", [0x94, 0x49, 0x99, 0xFF, 0xF4, 0x4F, 0x9A])
    def test_pair_index_above_8_refused(self, example_shape, byte):
        codec = self.codec()
        m, k = example_shape
        clean = codec.encode(make_ternary(example_shape, "random", 40), np.float32(1.0))
        for at in (0, 1, 17, m * k // 8, m * k // 4 - 1):
            buf = clean.copy()
            buf[at] = byte
            with pytest.raises(CorruptDataError):
                codec.decode(buf, example_shape)

    def test_matches_spec_formula_on_random_data(self, example_shape):
        codec = self.codec()
        tiles = codec.for_shape(example_shape).get_config()
        t = make_ternary(example_shape, "random", 41)
        out = codec.encode(t, np.float32(1.0))
        want = reference_tl1(t, tiles["BM"], tiles["BK"], tiles["bm"])
        np.testing.assert_array_equal(out[:-32], want)


class TestTL1(TL1Facts, CodecSuite):
    """Tiles chosen by bitpack (preset or first valid tiling)."""

    shapes = st.one_of(
        st.tuples(st.integers(1, 4).map(lambda n: 32 * n), st.integers(1, 24).map(lambda n: 8 * n)),
        st.tuples(st.integers(1, 2).map(lambda n: 64 * n), st.integers(0, 15).map(lambda n: 8 * n + 4)),
    )
    example_shapes = [(32, 16), (64, 12), (96, 136)]
    large_shape = (1056, 1032)
    known_sizes = {(2560, 2560): 1_638_432, (32, 16): 160}
    refused = [
        ((33, 64), "M = 33 is not a multiple of 32"),
        ((100, 128), "M = 100 is not a multiple of 32"),
        ((32, 6), "K = 6"),
        ((32, 12), "K = 12"),
    ]


class TestTL1ExplicitTiles(TL1Facts, CodecSuite):
    params = {"BM": 64, "BK": 32, "bm": 64}
    shapes = st.tuples(st.integers(1, 2).map(lambda n: 64 * n), st.integers(1, 4).map(lambda n: 32 * n))
    example_shapes = [(64, 32), (128, 96)]
    large_shape = (1088, 1056)
    refused = [
        ((32, 64), "M = 32 is not a multiple of BM = 64"),
        ((64, 48), "K = 48 is not a multiple of BK = 32"),
    ]


def reference_tl1(t: np.ndarray, BM: int, BK: int, bm: int) -> np.ndarray:  # noqa: N803
    """The §7.3 closed form, pair by pair."""
    M, K = t.shape  # noqa: N806
    by = 256 // bm
    out = np.zeros(M * K // 4, dtype=np.uint8)
    for m in range(M):
        i0, rest = divmod(m, BM)
        i2, rest = divmod(rest, bm)
        i4, r = divmod(rest, 16)
        for p in range(K // 2):
            i1, rest = divmod(p, BK // 2)
            i3, rest = divmod(rest, by // 2)
            i5, h = divmod(rest, 2)
            byte = (((((i0 * (K // BK) + i1) * (BM // bm) + i2) * (BK // by) + i3) * (bm // 16) + i4)
                    * (by // 4) + i5) * 16 + r
            idx = 3 * int(t[m, 2 * p]) + int(t[m, 2 * p + 1]) + 4
            out[byte] |= idx << (4 if h == 0 else 0)
    return out


def test_worked_example_positions_under_preset():
    """§7.6: bitnet_b1_58-large attention (1536, 1536), preset BM 128, BK 64, bm 64."""
    codec = get_codec("tl1")
    shape = (1536, 1536)
    assert codec.for_shape(shape).get_config() == {"id": "tl1", "BM": 128, "BK": 64, "bm": 64}
    t = np.zeros(shape, dtype=np.int8)
    want = {}  # byte -> value
    t[0, 0:4] = [1, -1, 0, 1]  # (0,0),(0,1) byte 0 high = 6; (0,2),(0,3) byte 0 low = 5
    want[0] = 0x65
    t[0, 4:6] = [-1, 1]  # byte 64 high, idx 2
    want[64] = 0x24
    for (m, k), byte, value in [((1, 0), 1, -1), ((15, 0), 15, 1), ((16, 0), 16, 1), ((63, 0), 63, -1),
                                ((64, 0), 1024, 1), ((0, 64), 2048, -1), ((128, 0), 49152, 1)]:
        t[m, k] = value
        want[byte] = 0x74 if value == 1 else 0x14  # (+1, 0) idx 7 / (-1, 0) idx 1, high nibble
    t[1535, 1535] = 1  # pair (0, +1) = idx 5 in the low nibble of the last byte
    want[589823] = 0x45
    out = codec.encode(t, np.float32(0.25))
    assert out.size == 1536 * 1536 // 4 + 32
    packed = out[:-32]
    for byte, value in want.items():
        assert packed[byte] == value, (byte, hex(packed[byte]), hex(value))
    rest = np.ones(packed.size, dtype=bool)
    rest[list(want)] = False
    assert (packed[rest] == 0x44).all()
    assert out[-32:].tobytes() == f32_le(0.25) + bytes(28)
    got, scale = codec.decode(out, shape)
    np.testing.assert_array_equal(got, t)
    assert scale == np.float32(0.25)


def test_worked_example_tiny_tensor():
    """§7.6: M = 32, K = 16, BM = 32, BK = 16, bm = 32: 160 bytes."""
    t = np.zeros((32, 16), dtype=np.int8)
    t[0, 0:4] = [1, -1, 0, 1]
    t[0, 14:16] = [1, 0]
    t[1, 0:2] = [-1, -1]
    t[17, 2:4] = [1, 1]
    want = np.full(128, 0x44, dtype=np.uint8)
    want[0], want[1], want[33], want[80] = 0x65, 0x04, 0x48, 0x47
    codec = get_codec("tl1", BM=32, BK=16, bm=32)
    out = codec.encode(t, np.float32(1.5546875))
    assert out.size == 160
    np.testing.assert_array_equal(out[:128], want)
    assert out[128:].tobytes() == f32_le(1.5546875) + bytes(28)
    got, scale = codec.decode(out.tobytes(), (32, 16))
    np.testing.assert_array_equal(got, t)
    assert scale == np.float32(1.5546875)
