"""iq1_bn: ik_llama.cpp IQ1_BN, GGML type 134 (formats/iq1_bn.md)."""

import numpy as np
import pytest
from codec_suite import (
    GOLDEN_2026,
    POSITIVE_F16,
    CodecSuite,
    Golden2026Checks,
    RowScaleChecks,
    make_ternary,
)
from hypothesis import strategies as st

from bitpack.codecs import CorruptDataError, ScaleError, get_codec


def byte_of(v: int) -> int:
    """ceil(256 * v / 243): the base-3 byte packing."""
    return (v * 256 + 242) // 243


def digits(v: int, n: int = 5) -> list[int]:
    """Base-3 digits of v, LEAST significant first (IQ1_BN's order)."""
    return [(v // 3**j) % 3 for j in range(n)]


class TestIQ1_BN(RowScaleChecks, Golden2026Checks, CodecSuite):
    name = "iq1_bn"
    golden = ("iq1_bn",)
    scale_dtype = "f16"
    scales = POSITIVE_F16
    shapes = st.tuples(st.integers(1, 6), st.integers(1, 4).map(lambda n: 64 * n))
    example_shapes = [(1, 64), (3, 192), (8, 512)]
    large_shape = (260, 4032)
    known_sizes = {(2560, 2560): 1_336_320, (1, 64): 15}
    refused = [((1, 32), "K = 32 is not a multiple of 64"), ((2, 100), "K = 100 is not a multiple of 64")]

    def expected_nbytes(self, m, k):
        return m * (2 + 13 * k // 64)

    def scale_offsets(self, m, k):
        return np.arange(m) * (2 + 13 * k // 64)

    @pytest.mark.parametrize("scale", [np.float32(0.1), np.float32(70000.0), np.float32(1 + 2**-11)], ids=repr)
    def test_scale_f16_cannot_hold_refused(self, scale):
        with pytest.raises(ScaleError, match="f16"):
            self.codec().encode(make_ternary((2, 64), "random", 60), scale)

    def test_one_row_f16_cannot_hold_names_it(self):
        s = np.array([[0.5], [0.1], [0.25]], dtype=np.float32)
        with pytest.raises(ScaleError, match="row 1"):
            self.codec().encode(make_ternary((3, 64), "plus"), s)


def test_every_byte_value_decodes_and_encodes():
    """Each of the 243 packings in ql[0] (weights 0..4) and ql[11] (weights 58..62), and
    each of the 81 in extra (weights 15, 31, 47, 63), decode to their digits and back."""
    codec = get_codec("iq1_bn")
    zero = bytes([0x00, 0x3C]) + bytes([byte_of(121)] * 12 + [byte_of(40)])  # scale 1.0, codes 0
    buf = np.frombuffer(zero * 243, dtype=np.uint8).reshape(243, 15).copy()
    want = np.zeros((243, 64), dtype=np.int8)
    for v in range(243):
        buf[v, 2], buf[v, 2 + 11] = byte_of(v), byte_of(242 - v)
        want[v, 0:5] = np.array(digits(v)) - 1
        want[v, 58:63] = np.array(digits(242 - v)) - 1
        buf[v, 14] = byte_of(v % 81)
        want[v, [15, 31, 47, 63]] = np.array(digits(v % 81, 4)) - 1
    want[~want.any(axis=1)] = 0
    t, s = codec.decode(buf, (243, 64))
    np.testing.assert_array_equal(t, want)
    nonzero = want.any(axis=1)
    np.testing.assert_array_equal(codec.encode(t[nonzero], np.float32(1.0)), buf[nonzero].reshape(-1))


@pytest.mark.parametrize("at,value", [(2, 0x01), (13, 0x01), (2 + 5, 0xB2), (14, byte_of(81)), (14, 0xFF)])
def test_invalid_bytes_refused(at, value):
    valid_bytes = {byte_of(v) for v in range(243)}
    assert value not in valid_bytes or at == 14
    codec = get_codec("iq1_bn")
    buf = codec.encode(make_ternary((2, 64), "random", 61), np.float32(1.0))
    buf[15 + at] = value  # row 1
    with pytest.raises(CorruptDataError, match=f"byte {15 + at}"):
        codec.decode(buf, (2, 64))


def test_worked_example():
    """formats/iq1_bn.md: iq1_bn_edge_8x256 rows 1 and 3."""
    with np.load(GOLDEN_2026 / "iq1_bn_edge_8x256.npz") as z:
        codes, scales = z["codes"], z["scales"]
    out = get_codec("iq1_bn").encode(codes, scales).reshape(8, 54)
    assert out[1, :2].tobytes() == bytes.fromhex("31 29")
    assert out[1, 2:15].tobytes() == bytes.fromhex("80 81 80 80 80 80 80 80 80 80 80 80 2B")
    assert out[1, 15:28].tobytes() == bytes.fromhex("80" * 12 + "0E")
    assert out[3].tobytes() == bytes(2) + (b"\xFF" * 12 + b"\x55") * 4
