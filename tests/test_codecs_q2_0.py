"""q2_0: mainline llama.cpp Q2_0, GGML type 42, group 64 (formats/q2_0.md, formats-2026.md §2)."""

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


class TestQ2_0(GroupScaleChecks, Golden2026Checks, TwoBitChecks, CodecSuite):
    name = "q2_0"
    group_size = 64
    block_bytes = 18
    d_offset = 0
    zero_block = b"\x00\x00" + b"\x55" * 16
    golden = ("q2_0",)
    shapes = group_shapes(64)
    example_shapes = [(1, 64), (3, 960)]
    refused = [
        ((4, 32), "K = 32 is not a multiple of 64"),
        ((2, 100), "K = 100 is not a multiple of 64"),
    ]
    known_sizes = {(2560, 2560): 1_843_200, (1, 64): 18}

    def code_bytes(self, m, k):
        blocks = np.arange(m * k // 64)[:, None] * 18
        return (blocks + np.arange(2, 18)).reshape(-1)


def test_type_ids():
    codec = get_codec("q2_0")
    assert codec.type_ids == {"mainline": 42, "prism": 42}
    assert codec.file_types == {"mainline": 41, "prism": 41}


# formats-2026.md §2 worked example: q2_0_64x256.npz, row 0, block 0
WORKED_T = [1, 1, 0, -1, 0, -1, 0, -1, 1, 0, 0, -1, 1, -1, -1, -1]
WORKED = bytes.fromhex("05 2D 1A 11 16 02 50 44 44 24 1A 95 48 50 25 64 96 69")


def test_worked_example():
    d = np.uint16(0x2D05).view(np.float16).astype(np.float32)
    got, scales = get_codec("q2_0").decode(WORKED, (1, 64))
    np.testing.assert_array_equal(got[0, :16], WORKED_T)
    assert scales.shape == (1, 1) and scales[0, 0] == d == np.float32(0.078430176)
    assert get_codec("q2_0").encode(got, scales).tobytes() == WORKED


def test_edge_bytes():
    """formats-2026.md §2: row 1 of the edge file, +1 at column 5 and -1 at column 127."""
    t = np.zeros((1, 128), dtype=np.int8)
    t[0, 5], t[0, 127] = 1, -1
    scales = np.array([[0.01635742, 0.00234795]], dtype=np.float16).astype(np.float32)
    out = get_codec("q2_0").encode(t, scales).tobytes()
    assert out[2:18] == bytes([0x55, 0x59] + [0x55] * 14)
    assert out[20:36] == bytes([0x55] * 15 + [0x15])


def reference_pack_block(t: np.ndarray) -> np.ndarray:
    """§2: weight j at bits 2 (j mod 4) of qs[j div 4]."""
    out = np.zeros(16, dtype=np.uint8)
    for j, code in enumerate((t + 1).astype(np.uint8)):
        out[j // 4] |= code << (2 * (j % 4))
    return out


def test_matches_spec_formula_on_random_data():
    t = make_ternary((2, 192), "random", 7)
    out = get_codec("q2_0").encode(t, np.float32(2.0)).reshape(6, 18)
    for b, block in enumerate(t.reshape(6, 64)):
        np.testing.assert_array_equal(out[b, 2:], reference_pack_block(block))
        assert out[b, :2].tobytes() == np.float16(2.0).tobytes()
