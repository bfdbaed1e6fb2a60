"""i2_packed: four consecutive weights of a row per byte, rows padded with code 1
(spec/codecs.md §2)."""

import numpy as np
import pytest
from codec_suite import (
    CodecSuite,
    F32ScaleChecks,
    SafetensorsChecks,
    TwoBitChecks,
    make_ternary,
    pad,
)
from hypothesis import strategies as st

from bitpack.codecs import CorruptDataError, get_codec


class TestI2Packed(SafetensorsChecks, F32ScaleChecks, TwoBitChecks, CodecSuite):
    name = "i2_packed"
    shapes = st.tuples(st.integers(1, 9), st.integers(1, 40))
    example_shapes = [(1, 8), (3, 6), (5, 37)]
    large_shape = (257, 4099)
    known_sizes = {(2560, 2560): 1_638_400, (1, 6): 2, (3, 5): 6}

    def expected_nbytes(self, m, k):
        return m * pad(k, 4) // 4

    def stored(self, m, k):
        return (m, pad(k, 4) // 4), np.dtype(np.uint8)

    def code_bytes(self, m, k):
        return np.arange(self.expected_nbytes(m, k))

    def test_bits_per_weight_formula(self, example_shape):
        m, k = example_shape
        assert self.codec().bits_per_weight(example_shape) == pytest.approx(8 * pad(k, 4) / (4 * k))


T_ROW = [1, 0, -1, -1, 0, 1, 1, 0]


@pytest.mark.parametrize(
    "rows,hexbytes",
    [
        ([T_ROW], "06 69"),
        ([T_ROW[:6]], "06 59"),  # K = 6: the last two codes are padding (code 1)
        ([T_ROW, [0, 0, 0, 0, -1, -1, -1, -1]], "06 69 55 00"),  # row 1 starts at byte 2
    ],
)
def test_worked_examples(rows, hexbytes):
    """§2 worked examples, s = 0.5."""
    t = np.array(rows, dtype=np.int8)
    codec = get_codec("i2_packed")
    out = codec.encode(t, np.float32(0.5))
    assert out.tobytes() == bytes.fromhex(hexbytes)
    got, _ = codec.decode(bytes.fromhex(hexbytes), t.shape)
    np.testing.assert_array_equal(got, t)


def test_rows_never_share_a_byte():
    """K = 5: each row takes two bytes, padded independently."""
    t = np.array([[1, 1, 1, 1, 1], [-1, -1, -1, -1, -1]], dtype=np.int8)
    out = get_codec("i2_packed").encode(t, np.float32(1.0))
    assert out.tobytes() == bytes([0xAA, 0x56, 0x00, 0x54])


@pytest.mark.parametrize("k", [5, 6, 7])
@pytest.mark.parametrize("code", [0, 2, 3])
def test_nonzero_padding_refused(k, code):
    codec = get_codec("i2_packed")
    shape = (3, k)
    buf = codec.encode(make_ternary(shape, "random", k), np.float32(1.0))
    for row in range(3):
        for j in range(k % 4, 4):  # every padding pair of the last byte of the row
            bad = buf.copy()
            bad[row, -1] = (bad[row, -1] & ~np.uint8(3 << 2 * j)) | np.uint8(code << 2 * j)
            with pytest.raises(CorruptDataError):
                codec.decode(bad, shape)
