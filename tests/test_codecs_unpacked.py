"""unpacked: ternary weights stored as their float values s x t (formats/unpacked.md)."""

import numpy as np
import pytest
from codec_suite import POSITIVE_F16, CodecSuite, group_shapes, make_ternary

from bitpack.codecs import get_codec
from bitpack.errors import CorruptDataError, ScaleError


def weights(codes: np.ndarray, scale) -> np.ndarray:
    """W = s x t for a scale per tensor or per group along the rows."""
    scale = np.asarray(scale, dtype=np.float32)
    if scale.ndim == 0:
        return codes * scale
    return codes * np.repeat(scale, codes.shape[1] // scale.shape[1], axis=1)


class TestUnpacked(CodecSuite):
    name = "unpacked"
    params = {"dtype": "f16"}
    container = "safetensors"
    shapes = group_shapes(32)
    example_shapes = [(1, 32), (3, 960)]
    scales = POSITIVE_F16
    good_scale = np.float32(1.5546875)
    large_shape = (1001, 1024)
    refused = [((4, 48), "K = 48 is not a multiple of 32")]
    known_sizes = {(2560, 2560): 13_107_200, (1, 32): 64}

    def expected_nbytes(self, m: int, k: int) -> int:
        return 2 * m * k

    def check_scale(self, got, given, t):
        # the values are what is stored: the decoded scale (at the coarsest granularity that
        # holds it; 0 for a tensor of zeros) gives back the same weights
        np.testing.assert_array_equal(weights(t, got), weights(t, given))


@pytest.mark.parametrize("dtype, itemsize", [("f16", 2), ("bf16", 2), ("f32", 4)])
def test_every_dtype_holds_group_scales_and_reports_the_coarsest(dtype, itemsize):
    rng = np.random.default_rng(1)
    codes = make_ternary((6, 256), "random", 1)
    group = rng.integers(1, 200, (6, 2)).astype(np.float32) / np.float32(256)  # exact in every dtype
    codec = get_codec("unpacked", dtype=dtype)
    buf = codec.encode(codes, group)
    assert buf.nbytes == 6 * 256 * itemsize
    got, scale = codec.decode(buf, (6, 256))
    np.testing.assert_array_equal(got, codes)
    np.testing.assert_array_equal(scale, group)  # group 128 is the coarsest that holds it
    row = np.repeat(group[:, :1], 2, axis=1)
    assert get_codec("unpacked", dtype=dtype).decode(codec.encode(codes, row), (6, 256))[1].shape == (6, 1)


def test_a_value_off_the_grid_is_corrupt_naming_row_and_group():
    codec = get_codec("unpacked")
    buf = codec.encode(make_ternary((4, 128), "plus"), np.float32(0.5)).view("<f2").copy()
    buf[2 * 128 + 70] = np.float16(0.25)
    with pytest.raises(CorruptDataError, match="row 2, group of 32 2"):
        codec.decode(buf, (4, 128))


def test_a_scale_the_dtype_cannot_hold_is_refused():
    with pytest.raises(ScaleError):
        get_codec("unpacked", dtype="bf16").encode(make_ternary((2, 64)), np.float32(1 + 2**-10))
    get_codec("unpacked", dtype="f16").encode(make_ternary((2, 64)), np.float32(1 + 2**-10))  # f16 holds it
