"""Scale granularity (formats-2026.md §7): exact conversion between per-tensor, per-row and
per-group scales, the coarsest exact form the executor uses, and deliberate merging."""

import numpy as np
import pytest

from bitpack.codecs._scales import coarsest, merge_scales, to_codec_scales
from bitpack.errors import ScaleError


def codes(m=2, k=256, seed=0):
    return np.random.default_rng(seed).choice(np.array([-1, 1], dtype=np.int8), size=(m, k))


def test_refining_copies_and_coarsening_needs_equal_scales():
    t = codes()
    g128 = np.array([[0.5, 0.25], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_codec_scales(g128, t, "group", 64, "f16", "q2_0"),
                                  np.repeat(g128, 2, axis=1))
    with pytest.raises(ScaleError, match=r"row 0, group 0 holds weights with different scales 0.25, 0.5"):
        to_codec_scales(g128, t, "group", 256, "f16", "tq2_0")
    assert to_codec_scales(g128[1:], t[1:], "tensor", None, "f32", "i2_s") == np.float32(1.0)


def test_an_all_zero_group_has_no_scale_to_keep():
    t = codes()
    t[0, 128:] = 0  # group 1 of row 0 holds no weight: its differing scale carries no information
    g128 = np.array([[0.5, 0.25], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_codec_scales(g128, t, "row", None, "f32", "iq2_bn"), [[0.5], [1.0]])


def test_a_value_the_dtype_cannot_hold_is_refused():
    with pytest.raises(ScaleError, match="stores f16 scales and cannot hold"):
        to_codec_scales(np.float32(0.1), codes(), "group", 64, "f16", "q2_0")


def test_coarsest_gives_layouts_of_the_same_weights_the_same_scale():
    t = codes(k=512)
    per_256 = np.array([[0.5, 0.25], [2.0, 2.0]], dtype=np.float32)
    per_64 = np.repeat(per_256, 4, axis=1)
    np.testing.assert_array_equal(coarsest(per_64, t), per_256)
    assert coarsest(np.full((2, 8), 0.5, np.float32), t) == np.float32(0.5)


def test_merge_is_least_squares_and_reports_its_error():
    t = np.ones((1, 256), dtype=np.int8)
    t[0, :64] = 0  # group 0 has 64 nonzero codes, group 1 has 128
    g128 = np.array([[1.0, 0.5]], dtype=np.float32)
    merged, error, ratio = merge_scales(g128, t, "group", 256, "f32")
    want = (64 * 1.0 + 128 * 0.5) / 192
    assert merged.shape == (1, 1) and merged[0, 0] == np.float32(want)
    w = np.concatenate([np.full(64, 1.0), np.full(128, 0.5)])
    assert error == pytest.approx(np.linalg.norm(w - want) / np.linalg.norm(w))
    assert ratio == 2.0
    # g64 pairs that agree merge to their common value, with no error
    exact, zero, one = merge_scales(np.repeat(g128, 2, axis=1), t, "group", 128, "f32")
    np.testing.assert_array_equal(exact, g128)
    assert (zero, one) == (0.0, 1.0)


def test_which_layouts_hold_each_other_whatever_the_values():
    from bitpack.codecs import codec_class
    from bitpack.codecs._scales import always_exact

    c = codec_class
    assert always_exact(c("pq2_0"), c("q2_0"), 512)  # g128 -> g64, f16 -> f16: refining
    assert always_exact(c("pq2_0"), c("ptq1_0"), 512)  # the same groups
    assert always_exact(c("tq2_0"), c("q2_0"), 512)  # g256 -> g64
    assert not always_exact(c("q2_0"), c("pq2_0"), 512)  # g64 -> g128 coarsens: the values decide
    assert not always_exact(c("i2_s"), c("q2_0"), 512)  # f32 -> f16 narrows
    assert always_exact(c("iq1_bn"), c("iq2_bn"), 512)  # row f16 -> row f32
    assert not always_exact(c("iq2_bn"), c("i2_s"), 512)  # row -> tensor
