"""TL1/TL2 tile parameters: presets, chosen tiles, explicit and partial tiles, refusals
(spec/codecs.md §7.2, §7.5, §8.1, §8.5)."""

import numpy as np
import pytest
from codec_suite import make_ternary
from hypothesis import given
from hypothesis import strategies as st

from bitpack.codecs import CodecError, CorruptDataError, ShapeError, get_codec

# §8.5, the setup_env codegen values (what a default bitnet.cpp build contains).
TL2_PRESETS = {
    (1536, 4096): (256, 96, 32), (1536, 1536): (128, 192, 32), (4096, 1536): (256, 96, 32),
    (3200, 8640): (160, 96, 32), (3200, 3200): (320, 96, 32), (8640, 3200): (320, 96, 32),
    (14336, 4096): (256, 96, 32), (4096, 14336): (128, 96, 32),
    (1024, 4096): (256, 96, 32), (4096, 4096): (128, 96, 32),
}
# §7.5, the setup_env codegen arguments (for Llama3-8B they differ from the preset ini).
TL1_PRESETS = {
    (1536, 4096): (256, 128, 32), (1536, 1536): (128, 64, 64), (4096, 1536): (256, 128, 32),
    (3200, 8640): (160, 64, 32), (3200, 3200): (320, 128, 64), (8640, 3200): (320, 64, 32),
    (14336, 4096): (256, 128, 32), (4096, 14336): (128, 64, 64),
    (1024, 4096): (256, 128, 32), (4096, 4096): (128, 64, 64),
}


def tl1_problem(m, k, BM, BK, bm):  # noqa: N803
    """§7.2 requirements, written independently of bitpack."""
    by = 256 // bm if bm in (32, 64) else None
    return not (bm in (32, 64) and BM % bm == 0 and m % BM == 0 and by and BK % by == 0 and k % BK == 0)


def tl2_problem(m, k, BM, BK, bm):  # noqa: N803
    """§8.1 requirements."""
    k2 = k % BK if BK else -1
    return not (bm == 32 and BM % 32 == 0 and m % BM == 0 and BK % 24 == 0 and k >= 256
                and BK <= k and k2 % 32 == 0 and k2 <= 256)


PROBLEM = {"tl1": tl1_problem, "tl2": tl2_problem}


def tiles_of(codec, shape):
    config = codec.for_shape(shape).get_config()
    assert set(config) == {"id", "BM", "BK", "bm"}
    assert all(isinstance(config[key], int) for key in ("BM", "BK", "bm"))
    return config["BM"], config["BK"], config["bm"]


@pytest.mark.parametrize("name,presets", [("tl1", TL1_PRESETS), ("tl2", TL2_PRESETS)])
def test_presets(name, presets):
    codec = get_codec(name)
    for shape, tiles in presets.items():
        assert tiles_of(codec, shape) == tiles, shape
        assert not PROBLEM[name](*shape, *tiles)


def test_brief_preset_examples():
    assert get_codec("tl2").for_shape((3200, 8640)).get_config() == {"id": "tl2", "BM": 160, "BK": 96, "bm": 32}
    assert get_codec("tl1").for_shape((4096, 14336)).get_config() == {"id": "tl1", "BM": 128, "BK": 64, "bm": 64}


def test_unbound_config_has_no_tiles():
    assert get_codec("tl1").get_config() == {"id": "tl1"}
    assert get_codec("tl2").get_config() == {"id": "tl2"}


def test_bound_codec_rebuilds_and_encodes_alike():
    shape = (64, 320)
    bound = get_codec("tl2").for_shape(shape)
    rebuilt = get_codec(bound.get_config())
    assert rebuilt == bound and rebuilt.for_shape(shape) == bound
    t = make_ternary(shape, "random", 1)
    np.testing.assert_array_equal(rebuilt.encode(t, np.float32(1.0)), get_codec("tl2").encode(t, np.float32(1.0)))


@given(m=st.integers(1, 8).map(lambda n: 32 * n), k=st.integers(1, 40).map(lambda n: 4 * n))
def test_tl1_shapes_without_preset_get_valid_tiles(m, k):
    codec = get_codec("tl1")
    valid = m % 32 == 0 and k % 8 == 0 or m % 64 == 0 and k % 4 == 0
    if not valid:
        with pytest.raises(ShapeError):
            codec.for_shape((m, k))
        return
    tiles = tiles_of(codec, (m, k))
    assert not tl1_problem(m, k, *tiles), tiles
    t = make_ternary((m, k), "random", m * k)
    got, _ = codec.decode(codec.encode(t, np.float32(1.0)), (m, k))
    np.testing.assert_array_equal(got, t)


@given(m=st.integers(1, 4).map(lambda n: 32 * n), k=st.integers(256, 700))
def test_tl2_shapes_without_preset_get_valid_tiles(m, k):
    codec = get_codec("tl2")
    # a valid tiling exists iff some BK = 24j <= K leaves a tail that is a multiple of 32 (<= 256)
    valid = any((k % bk) % 32 == 0 and k % bk <= 256 for bk in range(24, k + 1, 24))
    if not valid:
        with pytest.raises(ShapeError):
            codec.for_shape((m, k))
        return
    tiles = tiles_of(codec, (m, k))
    assert not tl2_problem(m, k, *tiles), tiles
    t = make_ternary((m, k), "random", m * k)
    got, _ = codec.decode(codec.encode(t, np.float32(1.0)), (m, k))
    np.testing.assert_array_equal(got, t)


@pytest.mark.parametrize(
    "name,tiles,shape",
    [
        ("tl1", (32, 64, 32), (1536, 1536)),  # overrides the 128/64/64 preset
        ("tl1", (64, 8, 64), (128, 64)),
        ("tl2", (32, 192, 32), (1536, 1536)),  # overrides 128/192/32
        ("tl2", (64, 96, 32), (128, 480)),
        ("tl2", (32, 24, 32), (32, 264)),
    ],
)
def test_explicit_tiles_honoured(name, tiles, shape):
    BM, BK, bm = tiles  # noqa: N806
    codec = get_codec(name, BM=BM, BK=BK, bm=bm)
    assert codec.get_config() == {"id": name, "BM": BM, "BK": BK, "bm": bm}
    assert tiles_of(codec, shape) == tiles


def test_explicit_tiles_change_the_bytes():
    shape = (64, 512)
    t = make_ternary(shape, "random", 2)
    default = get_codec("tl2")
    other = get_codec("tl2", BM=32, BK=192, bm=32)
    assert tiles_of(default, shape) != (32, 192, 32)
    a, b = default.encode(t, np.float32(1.0)), other.encode(t, np.float32(1.0))
    assert a.size == b.size and not np.array_equal(a, b)
    np.testing.assert_array_equal(other.decode(b, shape)[0], t)
    # the tiles are part of the layout: decoding with the wrong ones cannot give t back
    try:
        wrong = default.decode(b, shape)[0]
    except CorruptDataError:
        return
    assert not np.array_equal(wrong, t)


@pytest.mark.parametrize(
    "name,given_tiles,shape,check",
    [
        ("tl2", {"BK": 192}, (256, 512), lambda BM, BK, bm: BK == 192),
        ("tl2", {"BM": 32}, (3200, 8640), lambda BM, BK, bm: BM == 32),  # preset BM 160 replaced
        ("tl2", {"bm": 32}, (3200, 8640), lambda BM, BK, bm: (BM, BK, bm) == (160, 96, 32)),
        ("tl1", {"bm": 64}, (128, 512), lambda BM, BK, bm: bm == 64),
        ("tl1", {"bm": 32}, (1536, 1536), lambda BM, BK, bm: bm == 32),  # preset has bm 64
        ("tl1", {"BK": 16, "bm": 32}, (64, 64), lambda BM, BK, bm: (BK, bm) == (16, 32)),
    ],
)
def test_partial_tiles_completed(name, given_tiles, shape, check):
    codec = get_codec(name, **given_tiles)
    assert codec.get_config() == {"id": name, **given_tiles}
    tiles = tiles_of(codec, shape)
    assert check(*tiles), tiles
    assert not PROBLEM[name](*shape, *tiles)


@pytest.mark.parametrize(
    "name,params,shape,rule",
    [
        ("tl2", {}, (32, 128), "K = 128 is below 256"),
        ("tl2", {}, (40, 256), "M = 40 is not a multiple of 32"),
        ("tl2", {"BM": 32, "BK": 96, "bm": 32}, (32, 300), "the tail K mod BK = 12 is not a multiple of 32"),
        ("tl2", {"BK": 96}, (32, 300), "the tail K mod BK = 12 is not a multiple of 32"),
        ("tl2", {"BM": 32, "BK": 96, "bm": 64}, (32, 256), "bm = 64 must be 32"),
        ("tl2", {"BM": 32, "BK": 100, "bm": 32}, (32, 300), "BK = 100 is not a multiple of 24"),
        ("tl2", {"BM": 48, "BK": 96, "bm": 32}, (96, 288), "BM = 48 is not a multiple of 32"),
        ("tl2", {"BM": 64, "BK": 96, "bm": 32}, (96, 288), "M = 96 is not a multiple of BM = 64"),
        ("tl1", {}, (48, 64), "M = 48 is not a multiple of 32"),
        ("tl1", {"BM": 64, "BK": 64, "bm": 48}, (64, 64), "bm = 48 must be 32 or 64"),
        ("tl1", {"BM": 48, "BK": 64, "bm": 32}, (96, 64), "BM = 48 is not a multiple of bm = 32"),
        ("tl1", {"BM": 32, "BK": 12, "bm": 32}, (32, 48), "BK = 12 is not a multiple of 256/bm = 8"),
        ("tl1", {"BM": 32, "BK": 64, "bm": 32}, (32, 96), "K = 96 is not a multiple of BK = 64"),
    ],
)
def test_refusals_name_the_rule(name, params, shape, rule):
    codec = get_codec(name, **params)
    for call in (codec.check, codec.for_shape, codec.nbytes):
        with pytest.raises(ShapeError, match=rule.replace("(", r"\(")):
            call(shape)


@pytest.mark.parametrize("name", ["tl1", "tl2"])
@pytest.mark.parametrize("bad", [{"BM": 0}, {"BK": -96}, {"bm": 32.0}, {"BM": "128"}, {"bm": True}])
def test_bad_tile_values_refused(name, bad):
    with pytest.raises(CodecError):
        get_codec(name, **bad)


def test_non_tl_for_shape_is_the_same_codec():
    for name in ("int8", "i2_packed", "hf_packed", "i2_s", "tq2_0", "tq1_0"):
        codec = get_codec(name)
        assert codec.for_shape((32, 512)) == codec


def test_the_tl2_tiling_search_is_bounded_whatever_k(tmp_path):
    import time

    from bitpack.codecs import get_codec
    from bitpack.errors import ShapeError

    started = time.perf_counter()
    with pytest.raises(ShapeError):
        get_codec("tl2").check((32, 10**9 + 7))  # no tiling fits: refused without a 40-million-step search
    assert time.perf_counter() - started < 5


def test_a_hostile_shape_never_needs_zero_bytes():
    from bitpack.codecs import get_codec

    huge = (2**40, 2**40)
    assert get_codec("int8").nbytes(huge) == 2**80  # NumPy's int64 product would wrap to 0
    assert get_codec("hf_packed").nbytes(huge) == 2**78
