"""i2_s: bitnet.cpp I2_S, GGML type 36 (spec/codecs.md §4)."""

import numpy as np
import pytest
from hypothesis import strategies as st

from bitpack.codecs import get_codec
from codec_suite import (
    CodecSuite,
    F32ScaleChecks,
    GGUFChecks,
    TrailerChecks,
    TwoBitChecks,
    make_ternary,
)


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
