"""int8 ("I2 naive"): one int8 per weight (spec/codecs.md §1)."""

import numpy as np
import pytest
from codec_suite import CodecSuite, F32ScaleChecks, SafetensorsChecks, make_ternary
from hypothesis import strategies as st

from bitpack.codecs import CorruptDataError, get_codec


class TestInt8(SafetensorsChecks, F32ScaleChecks, CodecSuite):
    name = "int8"
    shapes = st.tuples(st.integers(1, 9), st.integers(1, 40))
    example_shapes = [(1, 8), (5, 13)]
    large_shape = (257, 4099)
    known_sizes = {(2560, 2560): 6_553_600}

    def expected_nbytes(self, m, k):
        return m * k

    def stored(self, m, k):
        return (m, k), np.dtype(np.int8)

    def test_bits_per_weight_is_8(self, example_shape):
        assert self.codec().bits_per_weight(example_shape) == 8.0


def test_alias_i2_naive():
    codec = get_codec("i2_naive")
    assert codec.name == "int8"
    assert codec == get_codec("int8")
    assert codec.get_config() == {"id": "int8"}


def test_worked_example():
    """§1: row [+1, 0, -1, -1, 0, +1, +1, 0], s = 0.5."""
    t = np.array([[1, 0, -1, -1, 0, 1, 1, 0]], dtype=np.int8)
    codec = get_codec("int8")
    out = codec.encode(t, np.float32(0.5))
    assert out.tobytes() == bytes.fromhex("01 00 FF FF 00 01 01 00")
    got, scale = codec.decode(bytes.fromhex("01 00 FF FF 00 01 01 00"), (1, 8), np.float32(0.5))
    np.testing.assert_array_equal(got, t)
    assert scale == np.float32(0.5)


@pytest.mark.parametrize("byte", [0x02, 0x7F, 0x80, 0xFE, 0x03])
@pytest.mark.parametrize("at", [0, 7, 8, 39])
def test_values_outside_ternary_refused(byte, at):
    codec = get_codec("int8")
    buf = codec.encode(make_ternary((4, 10), "random", 1), np.float32(1.0))
    buf.reshape(-1).view(np.uint8)[at] = byte
    with pytest.raises(CorruptDataError):
        codec.decode(buf, (4, 10))
