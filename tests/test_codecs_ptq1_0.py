"""ptq1_0: PrismML PTQ1_0, GGML type 143, base-3, group 128 (formats/ptq1_0.md, formats-2026.md §4)."""

import numpy as np
import pytest
from codec_suite import (
    CodecSuite,
    Golden2026Checks,
    GroupScaleChecks,
    group_shapes,
    make_ternary,
)

from bitpack.codecs import CorruptDataError, get_codec
from bitpack.codecs.tq1_0 import VALID, VALID_QH


class TestPTQ1_0(GroupScaleChecks, Golden2026Checks, CodecSuite):
    name = "ptq1_0"
    group_size = 128
    block_bytes = 28
    d_offset = 26
    zero_block = b"\x80" * 24 + b"\x7f" * 2 + b"\x00\x00"
    golden = ("prism_ptq1_0",)
    shapes = group_shapes(128)
    example_shapes = [(1, 128), (3, 640)]
    refused = [
        ((4, 64), "K = 64 is not a multiple of 128"),
        ((2, 960), "K = 960 is not a multiple of 128"),
    ]
    known_sizes = {(2560, 2560): 1_433_600, (1, 128): 28}

    @pytest.mark.parametrize("byte", [0, 5, 15, 16, 23])
    def test_invalid_qs_byte_refused(self, byte):
        buf = self.codec().encode(make_ternary((2, 256), "random", 50), self.good_scale)
        for value in np.flatnonzero(~VALID)[:: max(1, int((~VALID).sum()) // 4)]:
            bad = buf.copy()
            bad[28 + byte] = value
            with pytest.raises(CorruptDataError, match="block 1"):
                self.codec().decode(bad, (2, 256))

    @pytest.mark.parametrize("byte", [24, 25])
    def test_invalid_qh_byte_refused(self, byte):
        buf = self.codec().encode(make_ternary((1, 256), "random", 51), self.good_scale)
        fifth_trit = np.flatnonzero(VALID & ~VALID_QH)  # valid five-trit bytes, but trit 4 != 0
        for value in (fifth_trit[0], fifth_trit[-1], np.flatnonzero(~VALID)[0]):
            bad = buf.copy()
            bad[byte] = value
            with pytest.raises(CorruptDataError, match="block 0"):
                self.codec().decode(bad, (1, 256))


def test_type_ids():
    codec = get_codec("ptq1_0")
    assert codec.type_ids == {"prism": 143}
    assert codec.file_types == {"prism": 143}


def test_worked_example():
    """formats-2026.md §4: prism_ptq1_0_edge_8x256 row 1, +1 at column 5, -1 at column 255."""
    t = np.zeros((1, 256), dtype=np.int8)
    t[0, 5], t[0, 255] = 1, -1
    d = np.array([[0x2454, 0x18D1]], dtype=np.uint16).view(np.float16).astype(np.float32)
    want = (bytes.fromhex("80 80 80 80 80 D5") + b"\x80" * 18 + bytes.fromhex("7F 7F 54 24")
            + b"\x80" * 24 + bytes.fromhex("7F 7C D1 18"))
    assert get_codec("ptq1_0").encode(t, d).tobytes() == want
    got, scales = get_codec("ptq1_0").decode(want, (1, 256))
    np.testing.assert_array_equal(got, t)
    np.testing.assert_array_equal(scales, d)


def reference_pack_block(t: np.ndarray) -> bytes:
    """§4 from the formula: qs[m] <- weights m + 16n, qs[16+m] <- 80 + m + 8n, qh[h] <- 120 + h + 2n."""
    c = [int(x) + 1 for x in t]

    def byte(trits, qh=False):
        v = 0
        for x in trits:
            v = 3 * v + x
        v *= 3 if qh else 1
        return (256 * v + 242) // 243

    qs = [byte([c[m + 16 * n] for n in range(5)]) for m in range(16)]
    qs += [byte([c[80 + m + 8 * n] for n in range(5)]) for m in range(8)]
    qh = [byte([c[120 + h + 2 * n] for n in range(4)], qh=True) for h in range(2)]
    return bytes(qs + qh)


def test_matches_spec_formula_on_random_data():
    t = make_ternary((2, 384), "random", 7)
    out = get_codec("ptq1_0").encode(t, np.float32(2.0)).reshape(6, 28)
    for b, block in enumerate(t.reshape(6, 128)):
        assert out[b, :26].tobytes() == reference_pack_block(block)
        assert out[b, 26:].tobytes() == np.float16(2.0).tobytes()


def test_lossless_with_pq2_0():
    """§4: PQ2_0 <-> PTQ1_0 is exact both ways (same group, same f16 d, same code space)."""
    t = make_ternary((4, 512), "sparse", 8)
    scales = np.exp2(np.random.default_rng(8).integers(-9, 0, (4, 4))).astype(np.float32)
    codes, s = get_codec("pq2_0").decode(get_codec("pq2_0").encode(t, scales), t.shape)
    back, s2 = get_codec("ptq1_0").decode(get_codec("ptq1_0").encode(codes, s), t.shape)
    np.testing.assert_array_equal(back, t)
    np.testing.assert_array_equal(s2, s)
