"""pq2_0: PrismML PQ2_0 (type 142) = the legacy Prism Q2_0 (type 42), group 128
(formats/pq2_0.md, formats-2026.md §3)."""

import numpy as np
from codec_suite import (
    CodecSuite,
    Golden2026Checks,
    GroupScaleChecks,
    TwoBitChecks,
    group_shapes,
    make_ternary,
)

from bitpack.codecs import get_codec


class TestPQ2_0(GroupScaleChecks, Golden2026Checks, TwoBitChecks, CodecSuite):
    name = "pq2_0"
    group_size = 128
    block_bytes = 34
    d_offset = 0
    zero_block = b"\x00\x00" + b"\x55" * 32
    golden = ("prism_pq2_0", "prism_q2_0_g128")  # id 142 and the legacy id 42: the same bytes
    shapes = group_shapes(128)
    example_shapes = [(1, 128), (3, 640)]
    refused = [
        ((4, 64), "K = 64 is not a multiple of 128"),
        ((2, 960), "K = 960 is not a multiple of 128"),
    ]
    known_sizes = {(2560, 2560): 1_740_800, (1, 128): 34}

    def code_bytes(self, m, k):
        blocks = np.arange(m * k // 128)[:, None] * 34
        return (blocks + np.arange(2, 34)).reshape(-1)


def test_type_ids():
    codec = get_codec("pq2_0")
    assert codec.type_ids == {"prism": 142, "prism-legacy": 42}
    assert codec.file_types == {"prism": 141, "prism-legacy": 41}


def test_worked_example():
    """formats-2026.md §3: prism_pq2_0_edge_8x256 row 1, +1 at column 5, -1 at column 255."""
    t = np.zeros((1, 256), dtype=np.int8)
    t[0, 5], t[0, 255] = 1, -1
    d = np.array([[0x2E93, 0x3033]], dtype=np.uint16).view(np.float16).astype(np.float32)
    out = get_codec("pq2_0").encode(t, d).tobytes()
    assert out[:34] == bytes.fromhex("93 2E 55 59") + b"\x55" * 30
    assert out[34:] == bytes.fromhex("33 30") + b"\x55" * 31 + b"\x15"
    got, scales = get_codec("pq2_0").decode(out, (1, 256))
    np.testing.assert_array_equal(got, t)
    np.testing.assert_array_equal(scales, d)


def test_g128_to_g64_is_a_byte_shuffle():
    """§3: a PQ2_0 block d | q0..q15 | q16..q31 is the Q2_0 pair d | q0..q15, d | q16..q31
    (with 00 00 for a half whose codes are all zero)."""
    t = make_ternary((3, 512), "random", 5)
    t[1, 64:128] = 0
    pq = get_codec("pq2_0").encode(t, np.float32(0.5)).reshape(-1, 34)
    q2 = get_codec("q2_0").encode(t, np.float32(0.5)).reshape(-1, 2, 18)
    np.testing.assert_array_equal(q2[:, 0, 2:], pq[:, 2:18])
    np.testing.assert_array_equal(q2[:, 1, 2:], pq[:, 18:])
    assert q2[4, 1, :2].tobytes() == b"\x00\x00" and pq[4, :2].tobytes() == np.float16(0.5).tobytes()
