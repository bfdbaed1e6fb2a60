"""tq2_0: llama.cpp TQ2_0, GGML type 35 (spec/codecs.md §5)."""

import numpy as np
import pytest
from codec_suite import (
    CodecSuite,
    TQBakedChecks,
    TQSeparateChecks,
    TwoBitChecks,
    make_ternary,
)

from bitpack.codecs import get_codec


class TQ2Facts(TwoBitChecks):
    name = "tq2_0"
    block_bytes = 66
    known_sizes = {(2560, 2560): 1_689_600, (1, 256): 66}

    def code_bytes(self, m, k):
        blocks = np.arange(m * k // 256)[:, None] * 66
        return (blocks + np.arange(64)).reshape(-1)


class TestTQ2_0Baked(TQ2Facts, TQBakedChecks, CodecSuite):
    pass


class TestTQ2_0Separate(TQ2Facts, TQSeparateChecks, CodecSuite):
    pass


def test_default_scale_mode_is_baked():
    t = make_ternary((2, 512), "sparse", 1)
    np.testing.assert_array_equal(
        get_codec("tq2_0").encode(t, np.float32(0.5)),
        get_codec("tq2_0", scale_mode="baked").encode(t, np.float32(0.5)),
    )


@pytest.mark.parametrize("mode", ["bogus", "", "Baked"])
def test_unknown_scale_mode_refused(mode):
    with pytest.raises(ValueError):
        get_codec("tq2_0", scale_mode=mode)


def worked_tensor():
    t = np.zeros((1, 256), dtype=np.int8)
    t[0, [0, 127, 128]] = 1
    t[0, [1, 32, 255]] = -1
    return t


WORKED = bytes.fromhex("52 54" + " 55" * 29 + " 95" + " 56" + " 55" * 30 + " 15" + " 38 3E")


def test_worked_example():
    """§5.2: one row of K = 256, s = 1.5546875, 66 bytes."""
    assert len(WORKED) == 66
    codec = get_codec("tq2_0")
    assert codec.encode(worked_tensor(), np.float32(1.5546875)).tobytes() == WORKED
    got, scale = codec.decode(WORKED, (1, 256))
    np.testing.assert_array_equal(got, worked_tensor())
    assert isinstance(scale, np.float32) and scale == np.float32(1.5546875)


def test_worked_example_separate_mode():
    """Same codes, d = f16(1.0) = 00 3C."""
    out = get_codec("tq2_0", scale_mode="separate").encode(worked_tensor(), 1.0)
    assert out.tobytes() == WORKED[:64] + bytes.fromhex("00 3C")


def reference_pack_block(t: np.ndarray) -> np.ndarray:
    """§5: byte 32g + m, bits [2n, 2n+1] for element 128g + 32n + m."""
    c = (t + 1).astype(np.uint8)
    out = np.zeros(64, dtype=np.uint8)
    for e, code in enumerate(c):
        g, r = divmod(e, 128)
        n, m = divmod(r, 32)
        out[32 * g + m] |= code << (2 * n)
    return out


def test_matches_spec_formula_on_random_data():
    t = make_ternary((2, 512), "random", 7)
    out = get_codec("tq2_0").encode(t, np.float32(2.0)).reshape(4, 66)
    for b, block in enumerate(t.reshape(4, 256)):
        np.testing.assert_array_equal(out[b, :64], reference_pack_block(block))
