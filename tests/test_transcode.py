"""Codec.transcode: bytes -> bytes shortcuts between group-scale layouts (Q2_0 <-> PQ2_0 byte
shuffles, PQ2_0 and Q2_0 -> PTQ1_0 base-3 from the packed codes) must give exactly what
``dst.encode(*src.decode(buf, shape))`` gives, and refuse exactly what it refuses, with its
message (formats-2026.md §2-4, §7.2)."""

from __future__ import annotations

import numpy as np
import pytest

from bitpack.codecs import get_codec
from bitpack.errors import BitpackError, CorruptDataError, ScaleError, ShapeError

# (source, target) pairs with a shortcut, and a few without one (the reference path)
SHORTCUTS = [("pq2_0", "q2_0"), ("q2_0", "pq2_0"), ("pq2_0", "pq2_0"), ("q2_0", "q2_0"), ("pq2_0", "ptq1_0"),
             ("q2_0", "ptq1_0")]
PLAIN = [("q1_0", "ptq1_0"), ("ptq1_0", "pq2_0"), ("tq2_0", "q2_0"), ("ptq1_0", "q2_0")]
SHAPES = [(1, 128), (7, 128), (3, 384), (5, 640), (2, 2560)]


def reference(src, dst, buf, shape):
    """What decode + encode give: the bytes, or the error's type and message."""
    try:
        return dst.encode(*src.decode(buf, shape))
    except BitpackError as err:
        return type(err), str(err)


def shortcut(src, dst, buf, shape):
    try:
        return dst.transcode(src, buf, shape)
    except BitpackError as err:
        return type(err), str(err)


def same(a, b) -> bool:
    return a == b if isinstance(a, tuple) or isinstance(b, tuple) else np.array_equal(a, b)


def group_tensor(codec, shape, seed, *, zero_groups=0.3, zero_d=0.15, equal_halves=False):
    """Bytes of ``codec`` (q2_0 or pq2_0) with all-zero 64-weight halves, blocks with d = +0 or -0
    over leftover nonzero codes (which decode to 0), and random fp16 scales."""
    rng = np.random.default_rng(seed)
    m, k = shape
    codes = rng.integers(-1, 2, size=shape, dtype=np.int8)
    codes.reshape(m, k // 64, 64)[rng.random((m, k // 64)) < zero_groups] = 0
    g = codec.group_size
    scales = np.exp2(rng.uniform(-24, 8, size=(m, k // g))).astype(np.float16).astype(np.float32)
    if equal_halves and g == 64:
        scales[:, 1::2] = scales[:, 0::2]
    blocks = codec.encode(codes, scales).reshape(-1, codec.block_bytes).copy()
    for i in np.flatnonzero(rng.random(len(blocks)) < zero_d):
        blocks[i, :2] = (0, 0x80) if i % 2 else (0, 0)  # -0 or +0, codes left as they were
        blocks[i, 2:] = rng.integers(0, 3, size=g // 4) * 0x15  # codes 0, 1, 2 in three pairs
    return blocks.reshape(-1)


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS + PLAIN)
@pytest.mark.parametrize("shape", SHAPES)
def test_transcode_equals_decode_then_encode(src, dst, shape):
    a, b = get_codec(src), get_codec(dst)
    for seed in range(4):
        if src in ("q2_0", "pq2_0"):
            buf = group_tensor(a, shape, seed, equal_halves=seed % 2 == 0)
        else:
            codes = np.random.default_rng(seed).integers(-1, 2, size=shape, dtype=np.int8)
            codes.reshape(shape[0], -1, 128)[:, ::2] = np.sign(codes.reshape(shape[0], -1, 128)[:, ::2]) | 1
            codes.reshape(shape[0], -1, 128)[:, 1::3] = 0  # q1_0 holds only all-zero or all-nonzero groups
            scale = np.float32(0.5) if a.scale_granularity == "tensor" else np.full(
                (shape[0], shape[1] // a.group_size), 0.5, np.float32)
            try:
                buf = a.encode(codes, scale)
            except (ShapeError, BitpackError):
                continue
        want, got = reference(a, b, buf, shape), shortcut(a, b, buf, shape)
        assert same(want, got), (src, dst, shape, seed, want if isinstance(want, tuple) else "bytes")


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS)
def test_all_zero_tensors_and_blocks_take_the_normal_form(src, dst):
    a, b = get_codec(src), get_codec(dst)
    zeros = a.encode(np.zeros((3, 256), np.int8), np.float32(0))
    assert np.array_equal(b.transcode(a, zeros, (3, 256)), b.encode(np.zeros((3, 256), np.int8), np.float32(0)))
    minus = zeros.reshape(-1, a.block_bytes).copy()
    minus[:, :2] = (0, 0x80)  # d = -0 everywhere: still codes 0 and d = +0 out
    assert np.array_equal(b.transcode(a, minus.reshape(-1), (3, 256)), reference(a, b, minus.reshape(-1), (3, 256)))


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS)
@pytest.mark.parametrize("at", [0, 5, 37])
def test_a_code_3_is_refused_as_decode_refuses_it(src, dst, at):
    a, b = get_codec(src), get_codec(dst)
    buf = group_tensor(a, (3, 256), at).reshape(-1, a.block_bytes).copy()
    block, byte = divmod(at, a.block_bytes - 2)
    buf[block, 2 + byte] |= 0b11 << 4  # pair 2 holds code 3
    buf = buf.reshape(-1)
    want = reference(a, b, buf, (3, 256))
    assert want[0] is CorruptDataError and "code 3" in want[1]
    assert shortcut(a, b, buf, (3, 256)) == want


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS)
@pytest.mark.parametrize("bits", [0xBC00, 0x8001, 0x7C00, 0xFC00, 0x7E00, 0xFFFF])  # -1, -tiny, +-inf, NaNs
def test_a_corrupt_scale_is_refused_as_decode_refuses_it(src, dst, bits):
    a, b = get_codec(src), get_codec(dst)
    buf = group_tensor(a, (4, 256), 3).reshape(-1, a.block_bytes).copy()
    buf[5, :2] = (bits & 0xFF, bits >> 8)
    buf = buf.reshape(-1)
    want = reference(a, b, buf, (4, 256))
    assert want[0] is CorruptDataError and "row" in want[1]
    assert shortcut(a, b, buf, (4, 256)) == want


def test_joining_differing_halves_is_refused_as_encode_refuses_it():
    q2, pq = get_codec("q2_0"), get_codec("pq2_0")
    codes = np.ones((2, 256), np.int8)
    scales = np.full((2, 4), 0.5, np.float32)
    scales[1, 3] = 0.25
    buf = q2.encode(codes, scales)
    want = reference(q2, pq, buf, (2, 256))
    assert want[0] is ScaleError
    assert shortcut(q2, pq, buf, (2, 256)) == want
    codes[1, 192:256] = 0  # the half with the other scale holds no weight: exact again
    buf = q2.encode(codes, scales)
    assert np.array_equal(pq.transcode(q2, buf, (2, 256)), pq.encode(codes, np.full((2, 2), 0.5, np.float32)))


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS)
def test_shape_and_size_refusals_are_the_reference_ones(src, dst):
    a, b = get_codec(src), get_codec(dst)
    buf = group_tensor(a, (2, 256), 1)
    for data, shape in ((buf[:-2], (2, 256)), (buf, (2, 257)), (buf, (-2, 256)), (buf, (4, 128))):  # short, bad K
        assert same(shortcut(a, b, data, shape), reference(a, b, data, shape))
    if a.group_size == 64:
        odd = group_tensor(a, (2, 192), 1)  # K = 192: no multiple of 128
        assert same(shortcut(a, b, odd, (2, 192)), reference(a, b, odd, (2, 192)))


def test_expert_tensors_convert_as_rows():
    """A 3-D expert tensor is (experts x rows, K) to the codecs: one byte range per row."""
    pq, q2, pt = get_codec("pq2_0"), get_codec("q2_0"), get_codec("ptq1_0")
    buf = group_tensor(pq, (4 * 24, 384), 9)
    assert pq.row_bytes(384) == 3 * 34 and q2.row_bytes(384) == 6 * 18 and pt.row_bytes(384) == 3 * 28
    assert pq.row_bytes(200) is None and get_codec("tq2_0").row_bytes(256) == 66
    assert get_codec("i2_s").row_bytes(256) is None  # a per-tensor trailer: rows are not byte ranges of their own
    for dst in (q2, pt):
        whole = dst.transcode(pq, buf, (96, 384))
        parts = [dst.transcode(pq, buf[r * 102 : (r + 10) * 102], (min(10, 96 - r), 384)) for r in range(0, 96, 10)]
        assert np.array_equal(whole, np.concatenate(parts))
        assert np.array_equal(whole, reference(pq, dst, buf, (96, 384)))


def test_unaligned_input_bytes():
    """A block of rows sliced out of a mapped file may start at any byte address."""
    pq, q2, pt = get_codec("pq2_0"), get_codec("q2_0"), get_codec("ptq1_0")
    buf = group_tensor(pq, (3, 256), 4)
    shifted = np.empty(buf.size + 1, np.uint8)[1:]
    shifted[:] = buf
    for dst in (q2, pt):
        assert np.array_equal(dst.transcode(pq, shifted, (3, 256)), reference(pq, dst, buf, (3, 256)))


@pytest.mark.parametrize(("src", "dst"), SHORTCUTS)
def test_the_shortcut_never_decodes_valid_data(src, dst, monkeypatch):
    a, b = get_codec(src), get_codec(dst)
    buf = group_tensor(a, (6, 512), 2, equal_halves=True)
    want = reference(a, b, buf, (6, 512))

    def no_decode(*args, **kwargs):
        raise AssertionError("the reference path ran")

    monkeypatch.setattr(a, "decode", no_decode)
    assert np.array_equal(b.transcode(a, buf, (6, 512)), want)


@pytest.mark.parametrize("name", ["i2_s", "tq2_0", "tq1_0", "q2_0", "tl2", ("i2_s", "arm"), ("i2_s", "x86_1x4")])
def test_a_block_of_rows_encodes_to_its_rows_bytes_then_the_trailer(name):
    """body_row_bytes: a block of rows encodes to those rows' bytes of the whole tensor, then
    the per-tensor trailer (I2_S's 32 bytes; none for TQ and the group codecs)."""
    name, params = (name[0], {"layout": name[1]}) if isinstance(name, tuple) else (name, {})
    codec = get_codec(name, **params)
    m, k = 40, 256
    row = codec.body_row_bytes(k)
    if name == "tl2" or params.get("layout") == "x86_1x4":  # tiles, or rows interleaved in fours: whole only
        assert row is None
        return
    codes = np.random.default_rng(3).integers(-1, 2, size=(m, k)).astype(np.int8)
    whole = codec.encode(codes, np.float32(0.25))
    trailer = whole[m * row :]
    assert trailer.size == (32 if name == "i2_s" else 0)
    for lo, hi in ((0, 7), (7, 33), (33, 40)):
        block = codec.encode(codes[lo:hi], np.float32(0.25))
        assert np.array_equal(block, np.concatenate([whole[lo * row : hi * row], trailer]))
