"""i2_s: bitnet.cpp I2_S, GGML type 36 (spec/codecs.md §4)."""

import numpy as np
import pytest
from codec_suite import (
    GOLDEN_2026,
    CodecSuite,
    F32ScaleChecks,
    GGUFChecks,
    Golden2026Checks,
    TrailerChecks,
    TwoBitChecks,
    make_ternary,
)
from hypothesis import strategies as st

from bitpack.codecs import CodecError, get_codec


class TestI2S(GGUFChecks, F32ScaleChecks, TrailerChecks, TwoBitChecks, CodecSuite):
    name = "i2_s"
    shapes = st.tuples(st.integers(1, 6), st.integers(1, 3).map(lambda n: 128 * n))
    example_shapes = [(1, 128), (3, 256), (32, 384)]
    large_shape = (259, 4224)
    known_sizes = {(2560, 2560): 1_638_432, (1, 128): 64}
    refused = [
        ((32, 8640), "K = 8640 is not a multiple of 128"),
        ((1, 64), "K = 64 is not a multiple of 128"),
        ((4, 130), "K = 130 is not a multiple of 128"),
    ]

    def expected_nbytes(self, m, k):
        return m * k // 4 + 32

    def trailer_offset(self, m, k):
        return m * k // 4

    def code_bytes(self, m, k):
        return np.arange(m * k // 4)

    def test_bits_per_weight_formula(self, example_shape):
        m, k = example_shape
        assert self.codec().bits_per_weight(example_shape) == pytest.approx(2 + 256 / (m * k))

    def test_m_not_multiple_of_32_accepted(self):
        """M % 32 == 0 is only recommended (spec §4.4)."""
        assert self.codec().check((3, 128)) == (3, 128)


WORKED = bytes.fromhex(
    "85 15" + " 55" * 29 + " 56"
    + " 00 00 C7 3F" + " 00" * 28
)


def worked_tensor(m=1):
    t = np.zeros((m, 128), dtype=np.int8)
    t[0, 0], t[0, 1], t[0, 32], t[0, 127] = 1, -1, -1, 1
    return t


def test_worked_example():
    """§4.8: M = 1, K = 128, s = 1.5546875, 64 bytes."""
    codec = get_codec("i2_s")
    out = codec.encode(worked_tensor(), np.float32(1.5546875))
    assert len(WORKED) == 64
    assert out.tobytes() == WORKED
    got, scale = codec.decode(WORKED, (1, 128))
    np.testing.assert_array_equal(got, worked_tensor())
    assert scale == np.float32(1.5546875)


def test_worked_example_second_row():
    """§4.8: with M = 2, row 1 occupies bytes 32..63 and the trailer moves to byte 64."""
    t = np.concatenate([worked_tensor(), worked_tensor()[:, ::-1]])
    out = get_codec("i2_s").encode(t, np.float32(1.5546875))
    assert out.size == 96
    assert out[:32].tobytes() == WORKED[:32]
    row1 = get_codec("i2_s").encode(t[1:], np.float32(1.5546875))
    assert out[32:64].tobytes() == row1[:32].tobytes()
    assert out[64:].tobytes() == WORKED[32:]


def reference_pack(t: np.ndarray) -> np.ndarray:
    """The §4.1 formula element by element: byte 32b + p, value c << (6 - 2g)."""
    c = (t.reshape(-1) + 1).astype(np.uint8)
    out = np.zeros(c.size // 4, dtype=np.uint8)
    for e, code in enumerate(c):
        b, j = divmod(e, 128)
        g, p = divmod(j, 32)
        out[32 * b + p] |= code << (6 - 2 * g)
    return out


def test_matches_spec_formula_on_random_data():
    t = make_ternary((3, 256), "random", 6)
    out = get_codec("i2_s").encode(t, np.float32(1.0))
    np.testing.assert_array_equal(out[:-32], reference_pack(t))


# -- the two other byte layouts under id 36 (formats-2026 §6, formats/i2_s.md "Layouts") ----------
class I2SLayoutFacts(GGUFChecks, F32ScaleChecks, TrailerChecks, TwoBitChecks, Golden2026Checks):
    name = "i2_s"
    known_sizes = {(2560, 2560): 1_638_432, (4, 64): 96}

    def expected_nbytes(self, m, k):
        return m * k // 4 + 32

    def trailer_offset(self, m, k):
        return m * k // 4

    def code_bytes(self, m, k):
        return np.arange(m * k // 4)

    def test_default_layout_unchanged(self):
        """Choosing a layout never changes what the default codec records or writes."""
        assert get_codec("i2_s").get_config() == {"id": "i2_s"}
        assert get_codec("i2_s", layout="x86") == get_codec("i2_s")
        assert self.codec() != get_codec("i2_s")


class TestI2SX86_1x4(I2SLayoutFacts, CodecSuite):
    params = {"layout": "x86_1x4"}
    golden = ("i2s_x86_1x4",)
    shapes = st.tuples(st.integers(1, 4).map(lambda n: 4 * n), st.integers(1, 300))
    example_shapes = [(4, 1), (4, 7), (8, 256), (12, 96)]
    large_shape = (260, 4001)
    refused = [((3, 256), "M = 3 is not a multiple of 4"), ((6, 128), "M = 6 is not a multiple of 4")]

    def test_matches_spec_formula(self):
        """§6.1: byte rg*K + col = c[4rg] << 6 | c[4rg+1] << 4 | c[4rg+2] << 2 | c[4rg+3]."""
        t = make_ternary((8, 5), "random", 70)
        c = (t + 1).astype(np.uint8)
        out = self.codec().encode(t, np.float32(1.0))
        want = [c[4 * rg, col] << 6 | c[4 * rg + 1, col] << 4 | c[4 * rg + 2, col] << 2 | c[4 * rg + 3, col]
                for rg in range(2) for col in range(5)]
        assert out[:-32].tolist() == want


class TestI2SArm(I2SLayoutFacts, CodecSuite):
    params = {"layout": "arm"}
    golden = ("i2s_arm_qk64",)
    shapes = st.tuples(st.integers(1, 6), st.integers(1, 4).map(lambda n: 64 * n))
    example_shapes = [(1, 64), (3, 192), (32, 320)]
    large_shape = (259, 4032)
    refused = [((1, 32), "K = 32 is not a multiple of 64"), ((4, 100), "K = 100 is not a multiple of 64")]

    def test_matches_spec_formula(self):
        """§6.2: flat element e, block b = e // 64, byte 16b + j % 16, shift 6 - 2 (j // 16)."""
        t = make_ternary((3, 128), "random", 71)
        c = (t.reshape(-1) + 1).astype(np.uint8)
        want = np.zeros(c.size // 4, dtype=np.uint8)
        for e, code in enumerate(c):
            b, j = divmod(e, 64)
            want[16 * b + j % 16] |= code << (6 - 2 * (j // 16))
        np.testing.assert_array_equal(self.codec().encode(t, np.float32(1.0))[:-32], want)


@pytest.mark.parametrize("layout", ["neon", "x86_4x1", "", "ARM"])
def test_unknown_layout_lists_the_three(layout):
    with pytest.raises(CodecError, match="x86, x86_1x4, arm"):
        get_codec("i2_s", layout=layout)


@pytest.mark.parametrize("layout", ["x86", "x86_1x4", "arm"])
def test_layouts_convert_losslessly(layout):
    """The same tensor written in one layout reads back identically from every other."""
    t = make_ternary((8, 256), "random", 72)
    buf = get_codec("i2_s", layout=layout).encode(t, np.float32(0.25))
    got, s = get_codec("i2_s", layout=layout).decode(buf, t.shape)
    for other in ("x86", "x86_1x4", "arm"):
        again = get_codec("i2_s", layout=other).encode(got, s)
        np.testing.assert_array_equal(get_codec("i2_s", layout=other).decode(again, t.shape)[0], t)


def test_worked_examples_of_the_layouts():
    """formats/i2_s.md: the edge files' first bytes in layouts x86_1x4 and arm."""
    with np.load(GOLDEN_2026 / "i2s_x86_1x4_edge_8x256.npz") as z:
        out = get_codec("i2_s", layout="x86_1x4").encode(z["codes"], z["scales"])
    assert out[:8].tobytes() == bytes.fromhex("51 51 51 51 51 61 51 51")
    assert out[512:520].tobytes() == bytes.fromhex("00 C0 C1 3B 00 00 00 00")
    with np.load(GOLDEN_2026 / "i2s_arm_qk64_edge_8x256.npz") as z:
        out = get_codec("i2_s", layout="arm").encode(z["codes"], z["scales"])
    assert out[64:80].tobytes() == bytes.fromhex("55 55 55 55 55 95" + " 55" * 10)
