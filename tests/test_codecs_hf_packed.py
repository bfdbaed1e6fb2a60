"""hf_packed: transformers' BitNet layout, uint8 [M/4, K]; bit pair i of byte [r, k] holds
row i*M/4 + r (spec/codecs.md §3)."""

import numpy as np
from codec_suite import (
    CodecSuite,
    F32ScaleChecks,
    SafetensorsChecks,
    TwoBitChecks,
    make_ternary,
)
from hypothesis import strategies as st

from bitpack.codecs import get_codec


class TestHFPacked(SafetensorsChecks, F32ScaleChecks, TwoBitChecks, CodecSuite):
    name = "hf_packed"
    shapes = st.tuples(st.integers(1, 6).map(lambda n: 4 * n), st.integers(1, 40))
    example_shapes = [(8, 2), (12, 9), (32, 40)]
    large_shape = (260, 4099)
    known_sizes = {(2560, 2560): 1_638_400}
    refused = [
        ((6, 8), "M = 6 is not a multiple of 4"),
        ((1, 256), "M = 1 is not a multiple of 4"),
        ((2562, 2560), "M = 2562 is not a multiple of 4"),
    ]

    def expected_nbytes(self, m, k):
        return m * k // 4

    def stored(self, m, k):
        return (m // 4, k), np.dtype(np.uint8)

    def code_bytes(self, m, k):
        return np.arange(m * k // 4)

    def test_bits_per_weight_is_2(self, example_shape):
        assert self.codec().bits_per_weight(example_shape) == 2.0


def reference_unpack(packed: np.ndarray) -> np.ndarray:
    """transformers' unpack_weights, written from the spec formula c[i*R + r, k] = (P[r, k] >> 2i) & 3."""
    r = packed.shape[0]
    out = np.empty((4 * r, packed.shape[1]), dtype=np.int8)
    for i in range(4):
        out[i * r : (i + 1) * r] = ((packed >> (2 * i)) & 3).astype(np.int8) - 1
    return out


def test_worked_example():
    """§3: M = 8, K = 2 -> 92 54 49 0A."""
    t = np.array([[1, -1], [0, 1], [-1, 0], [1, 1], [0, 0], [-1, -1], [1, 0], [0, -1]], dtype=np.int8)
    codec = get_codec("hf_packed")
    out = codec.encode(t, np.float32(1.0))
    assert out.shape == (2, 2)
    assert out.tobytes() == bytes.fromhex("92 54 49 0A")
    got, _ = codec.decode(bytes.fromhex("92 54 49 0A"), (8, 2))
    np.testing.assert_array_equal(got, t)


def test_transformers_docstring_example():
    """§3: the transformers docstring's packed matrix and what it unpacks to."""
    packed = np.array([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=np.uint8)
    t = np.array([[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]], dtype=np.int8)
    codec = get_codec("hf_packed")
    got, _ = codec.decode(packed, (8, 2))
    np.testing.assert_array_equal(got, t)
    np.testing.assert_array_equal(codec.encode(t, np.float32(1.0)), packed)


def test_matches_spec_formula_on_random_data():
    t = make_ternary((64, 24), "random", 5)
    packed = get_codec("hf_packed").encode(t, np.float32(1.0))
    np.testing.assert_array_equal(reference_unpack(packed), t)
