"""tq1_0: llama.cpp TQ1_0, GGML type 34 (spec/codecs.md §6)."""

import numpy as np
import pytest
from codec_suite import CodecSuite, TQBakedChecks, TQSeparateChecks, make_ternary

from bitpack.codecs import CorruptDataError, get_codec


class TQ1Facts:
    name = "tq1_0"
    block_bytes = 54
    known_sizes = {(2560, 2560): 1_382_400, (1, 256): 54}


class TestTQ1_0Baked(TQ1Facts, TQBakedChecks, CodecSuite):
    pass


class TestTQ1_0Separate(TQ1Facts, TQSeparateChecks, CodecSuite):
    pass


def byte_of(v: int) -> int:
    """§6 packing: byte = ceil(v * 256 / 243)."""
    return (v * 256 + 242) // 243


def trits(v: int, n: int = 5) -> list[int]:
    """Base-3 digits of v, most significant first (5 digits)."""
    return [(v // 3 ** (4 - i)) % 3 for i in range(n)]


VALID_QS = {byte_of(v) for v in range(243)}
VALID_QH = {byte_of(v) for v in range(0, 243, 3)}  # fifth trit 0
ZERO_BLOCK = bytes([0x80] * 48 + [0x7F] * 4) + bytes.fromhex("00 3C")


def worked_tensor():
    t = np.zeros((1, 256), dtype=np.int8)
    t[0, [0, 127, 128]] = 1
    t[0, [1, 32, 255]] = -1
    return t


WORKED = bytes.fromhex("BA 2B" + " 80" * 29 + " 83" + " 80" * 16 + " 7F 7F 7F 7C" + " 38 3E")


def test_constant_bytes():
    assert byte_of(121) == 0x80 and byte_of(120) == 0x7F
    assert len(VALID_QS) == 243 and len(VALID_QH) == 81


def test_worked_example():
    """§6.1: the §5.2 block as TQ1_0, 54 bytes."""
    assert len(WORKED) == 54
    codec = get_codec("tq1_0")
    assert codec.encode(worked_tensor(), np.float32(1.5546875)).tobytes() == WORKED
    got, scale = codec.decode(WORKED, (1, 256))
    np.testing.assert_array_equal(got, worked_tensor())
    assert isinstance(scale, np.float32) and scale == np.float32(1.5546875)


def test_all_zero_block_bytes():
    out = get_codec("tq1_0", scale_mode="separate").encode(np.zeros((1, 256), np.int8), 1.0)
    assert out.tobytes() == ZERO_BLOCK


def test_every_qs_value_decodes_and_encodes():
    """Each of the 243 packings in qs[0] (elements 0, 32, 64, 96, 128) and qs[47]
    (elements 175, 191, 207, 223, 239) decodes to its digits and encodes back."""
    codec = get_codec("tq1_0", scale_mode="separate")
    buf = np.frombuffer(ZERO_BLOCK * 243, dtype=np.uint8).reshape(243, 54).copy()
    for v in range(243):
        buf[v, 0] = byte_of(v)
        buf[v, 47] = byte_of(242 - v)
    t, _ = codec.decode(buf, (243, 256))
    want = np.zeros((243, 256), dtype=np.int8)
    for v in range(243):
        want[v, [0, 32, 64, 96, 128]] = np.array(trits(v)) - 1
        want[v, [175, 191, 207, 223, 239]] = np.array(trits(242 - v)) - 1
    np.testing.assert_array_equal(t, want)
    np.testing.assert_array_equal(codec.encode(t, 1.0), buf.reshape(-1))


def test_every_qh_value_decodes_and_encodes():
    """qh[j] holds elements 240 + j + 4n, n = 0..3 (the fifth trit is 0)."""
    codec = get_codec("tq1_0", scale_mode="separate")
    values = list(range(0, 243, 3))
    buf = np.frombuffer(ZERO_BLOCK * len(values), dtype=np.uint8).reshape(-1, 54).copy()
    for row, v in enumerate(values):
        buf[row, 48] = byte_of(v)
        buf[row, 51] = byte_of(v)
    t, _ = codec.decode(buf, (len(values), 256))
    want = np.zeros((len(values), 256), dtype=np.int8)
    for row, v in enumerate(values):
        digits = np.array(trits(v)[:4]) - 1
        want[row, [240, 244, 248, 252]] = digits
        want[row, [243, 247, 251, 255]] = digits
    np.testing.assert_array_equal(t, want)
    np.testing.assert_array_equal(codec.encode(t, 1.0), buf.reshape(-1))


@pytest.mark.parametrize("at", [0, 31, 32, 47])
def test_qs_bytes_that_do_not_round_trip_refused(at):
    codec = get_codec("tq1_0")
    bad_bytes = sorted(set(range(256)) - VALID_QS)
    assert len(bad_bytes) == 13
    base = codec.encode(make_ternary((1, 256), "random", 8), np.float32(1.0))
    for byte in bad_bytes:
        buf = base.copy()
        buf[at] = byte
        with pytest.raises(CorruptDataError):
            codec.decode(buf, (1, 256))


@pytest.mark.parametrize("at", [48, 51])
def test_qh_bytes_with_fifth_trit_or_no_round_trip_refused(at):
    codec = get_codec("tq1_0")
    base = codec.encode(make_ternary((1, 256), "random", 9), np.float32(1.0))
    bad_bytes = sorted(set(range(256)) - VALID_QH)
    assert 0x80 in bad_bytes  # v = 121: valid in qs, but its fifth trit is 1
    for byte in bad_bytes:
        buf = base.copy()
        buf[at] = byte
        with pytest.raises(CorruptDataError):
            codec.decode(buf, (1, 256))


def test_corrupt_byte_in_a_later_block_refused():
    codec = get_codec("tq1_0")
    shape = (3, 512)
    base = codec.encode(make_ternary(shape, "random", 10), np.float32(1.0))
    for block, offset in ((5, 10), (4, 50), (3, 49)):
        buf = base.copy()
        buf[block * 54 + offset] = 0x01 if offset < 48 else 0x80  # 0x01: v = 0 encodes to 0x00
        with pytest.raises(CorruptDataError):
            codec.decode(buf, shape)
