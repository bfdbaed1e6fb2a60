"""tl2: bitnet.cpp TL2, GGML type 39/42 (spec/codecs.md §8). Tile selection: test_tiles.py."""

import numpy as np
import pytest
from codec_suite import (
    CodecSuite,
    F32ScaleChecks,
    GGUFChecks,
    TrailerChecks,
    f32_le,
    make_ternary,
    pad,
)
from hypothesis import strategies as st

from bitpack.codecs import CorruptDataError, ShapeError, get_codec


def payload_size(m: int, k: int) -> int:
    """§8.4: F = floor(floor((K - 256) * M / 3) * 5 / 8) + 64 * M."""
    return (k - 256) * m // 3 * 5 // 8 + 64 * m


def regions(m: int, k: int, bk: int) -> tuple[int, int, int]:
    """Sizes of the index, sign and two regions."""
    k3 = k // bk * bk
    return k3 * m // 6, k3 * m // 24, (k - k3) * m // 4


def reference_tl2(t: np.ndarray, BM: int, BK: int, scale: float) -> np.ndarray:  # noqa: N803
    """§8.2-§8.4, triplet by triplet and pair by pair."""
    M, K = t.shape  # noqa: N806
    K3 = K // BK * BK  # noqa: N806
    K2 = K - K3  # noqa: N806
    n_index, n_sign, _ = regions(M, K, BK)
    F = payload_size(M, K)  # noqa: N806
    out = np.zeros(pad(F, 32) + 32, dtype=np.uint8)
    for m in range(M):
        i0, rest = divmod(m, BM)
        i2, r = divmod(rest, 32)
        pos = [0, 2, 1, 3][r // 8] * 8 + r % 8
        for tau in range(K3 // 3):
            t0, t1, t2 = (int(x) for x in t[m, 3 * tau : 3 * tau + 3])
            v = 9 * t0 + 3 * t1 + t2
            i1, rest = divmod(tau, BK // 3)
            i3, h = divmod(rest, 2)
            byte = (((i0 * (K3 // BK) + i1) * (BM // 32) + i2) * (BK // 6) + i3) * 32 + pos
            out[byte] |= abs(v) << (4 if h == 0 else 0)
            if v < 0:
                g, u = divmod(rest, 8)
                base = (((i0 * (K3 // BK) + i1) * (BM // 32) + i2) * (BK // 24) + g) * 32
                bit = 15 - (2 * u + r // 16)
                out[n_index + base + 2 * (r % 16) + (1 if bit >= 8 else 0)] |= 1 << (bit % 8)
        for p in range(K2 // 2):
            i1, rest = divmod(p, 16)
            i3, h = divmod(rest, 2)
            byte = (((i0 * (K2 // 32) + i1) * (BM // 32) + i2) * 8 + i3) * 32 + pos
            idx = 3 * int(t[m, K3 + 2 * p]) + int(t[m, K3 + 2 * p + 1]) + 4
            out[n_index + n_sign + byte] |= idx << (4 if h == 0 else 0)
    out[pad(F, 32) : pad(F, 32) + 4] = np.frombuffer(f32_le(scale), dtype=np.uint8)
    return out


class TL2Facts(GGUFChecks, F32ScaleChecks, TrailerChecks):
    name = "tl2"
    known_sizes = {(2560, 2560): 1_392_672, (32, 320): 2528}

    def expected_nbytes(self, m, k):
        return pad(payload_size(m, k), 32) + 32

    def trailer_offset(self, m, k):
        return pad(payload_size(m, k), 32)

    def test_matches_spec_formula_on_random_data(self, example_shape):
        codec = self.codec()
        tiles = codec.for_shape(example_shape).get_config()
        assert tiles["bm"] == 32
        t = make_ternary(example_shape, "random", 50)
        out = codec.encode(t, np.float32(0.5))
        np.testing.assert_array_equal(out, reference_tl2(t, tiles["BM"], tiles["BK"], 0.5))

    def test_padding_is_zero(self, example_shape):
        codec = self.codec()
        m, k = example_shape
        bk = codec.for_shape(example_shape).get_config()["BK"]
        out = codec.encode(make_ternary(example_shape, "minus", 51), np.float32(1.0))
        assert not out[sum(regions(m, k, bk)) : self.trailer_offset(m, k)].any()


class TestTL2(TL2Facts, CodecSuite):
    """Tiles chosen by bitpack (preset or first valid tiling)."""

    shapes = st.tuples(
        st.integers(1, 3).map(lambda n: 32 * n),
        st.one_of(st.integers(8, 16).map(lambda n: 32 * n), st.sampled_from([264, 312])),
    )
    example_shapes = [(32, 256), (64, 320), (32, 264)]
    large_shape = (1056, 1312)
    refused = [
        ((32, 128), "K = 128 is below 256"),
        ((32, 255), "K = 255 is below 256"),
        ((48, 256), "M = 48 is not a multiple of 32"),
        ((16, 512), "M = 16 is not a multiple of 32"),
        ((32, 260), "K = 260"),
    ]


class TestTL2ExplicitTiles(TL2Facts, CodecSuite):
    params = {"BM": 32, "BK": 192, "bm": 32}
    shapes = st.tuples(st.integers(1, 3).map(lambda n: 32 * n), st.integers(8, 17).map(lambda n: 32 * n))
    example_shapes = [(32, 256), (64, 448), (96, 384)]
    large_shape = (1056, 1376)
    refused = [
        ((32, 300), "the tail K mod BK = 108 is not a multiple of 32"),
        ((32, 128), "K = 128 is below 256"),
        ((48, 256), "M = 48 is not a multiple of"),
    ]


def test_tail_of_256_columns():
    """K2 = 256, the largest tail the padded size F holds (§8.1): BK = 288 on K = 544."""
    codec = get_codec("tl2", BM=32, BK=288, bm=32)
    t = make_ternary((32, 544), "random", 52)
    out = codec.encode(t, np.float32(0.5))
    assert sum(regions(32, 544, 288)) == payload_size(32, 544)  # the data fills F exactly
    np.testing.assert_array_equal(out, reference_tl2(t, 32, 288, 0.5))
    np.testing.assert_array_equal(codec.decode(out, (32, 544))[0], t)
    with pytest.raises(ShapeError, match="above 256"):
        get_codec("tl2", BM=32, BK=312, bm=32).check((32, 600))  # tail 288


# -- §8.6 worked example -------------------------------------------------------------------
SHAPE = (32, 320)
TILES = {"BM": 32, "BK": 96, "bm": 32}


def worked_tensor():
    t = np.zeros(SHAPE, dtype=np.int8)
    t[0, 0:3] = [1, -1, 0]
    t[0, 3:6] = [0, 0, -1]
    t[1, 0:3] = [-1, 1, 1]
    t[9, 0:3] = [1, 1, 1]
    t[0, 288:290] = [1, 1]
    t[31, 318:320] = [-1, 1]
    return t


def test_worked_example():
    """§8.6: M = 32, K = 320, BM = 32, BK = 96, bm = 32: 2528 bytes."""
    codec = get_codec("tl2", **TILES)
    assert regions(*SHAPE, 96) == (1536, 384, 256)
    assert payload_size(*SHAPE) == 2474
    assert codec.nbytes(SHAPE) == 2528
    out = codec.encode(worked_tensor(), np.float32(1.5546875))
    assert out.size == 2528
    index, sign, two = out[:1536], out[1536:1920], out[1920:2176]
    want_index = np.zeros(1536, dtype=np.uint8)
    want_index[[0, 1, 17]] = [0x61, 0x50, 0xD0]
    want_sign = np.zeros(384, dtype=np.uint8)
    want_sign[[1, 3]] = [0x20, 0x80]
    want_two = np.full(256, 0x44, dtype=np.uint8)
    want_two[[0, 255]] = [0x84, 0x42]
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(sign, want_sign)
    np.testing.assert_array_equal(two, want_two)
    assert not out[2176:2496].any()
    assert out[2496:].tobytes() == f32_le(1.5546875) + bytes(28)
    got, scale = codec.decode(out.tobytes(), SHAPE)
    np.testing.assert_array_equal(got, worked_tensor())
    assert scale == np.float32(1.5546875)
    # the default tiles for this shape are the same, so the bytes are too
    np.testing.assert_array_equal(get_codec("tl2").encode(worked_tensor(), np.float32(1.5546875)), out)


def test_bits_per_weight_examples():
    """§8.4: about 1.6875 for K = 4096 and 1.70 for K = 2560."""
    codec = get_codec("tl2")
    assert codec.bits_per_weight((4096, 4096)) == pytest.approx(1.6875, abs=1e-4)
    assert codec.bits_per_weight((2560, 2560)) == pytest.approx(1.70, abs=0.005)


def corrupt(offset: int, value: int) -> bytes:
    buf = get_codec("tl2", **TILES).encode(worked_tensor(), np.float32(1.0))
    buf[offset] = value
    return buf.tobytes()


@pytest.mark.parametrize(
    "offset,value",
    [
        (0, 0xE1),  # triplet 0 of row 0: index 14
        (0, 0x6F),  # triplet 1 of row 0: index 15
        (5, 0x0E),  # a zero byte, low nibble 14
        (1535, 0xF0),  # last index byte
    ],
)
def test_index_above_13_refused(offset, value):
    with pytest.raises(CorruptDataError):
        get_codec("tl2", **TILES).decode(corrupt(offset, value), SHAPE)


@pytest.mark.parametrize("offset,value", [(1536 + 0, 0x01), (1536 + 2, 0x80), (1536 + 383, 0x01), (1536 + 1, 0x30)])
def test_sign_bit_on_index_0_refused(offset, value):
    """Every triplet there is zero (index 0) except row 0 triplet 1 (sign byte 1, bit 5)."""
    with pytest.raises(CorruptDataError):
        get_codec("tl2", **TILES).decode(corrupt(offset, value), SHAPE)


def test_sign_bit_on_nonzero_index_negates():
    """Clearing row 0 triplet 1's sign bit (sign byte 1 = 0x20) turns v = -1 into +1."""
    got, _ = get_codec("tl2", **TILES).decode(corrupt(1536 + 1, 0x00), SHAPE)
    want = worked_tensor()
    want[0, 3:6] = [0, 0, 1]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("offset,value", [(1920, 0x94), (1920 + 255, 0x49), (1920 + 100, 0xFF)])
def test_tail_pair_index_above_8_refused(offset, value):
    with pytest.raises(CorruptDataError):
        get_codec("tl2", **TILES).decode(corrupt(offset, value), SHAPE)
