"""The codec conformance suite: one set of checks that every codec must pass.

Following fsspec's "one conformance suite, many implementations" idea, ``CodecSuite``
holds the checks and each codec's test module plugs in a small subclass that states the
codec's own facts:

* ``name`` / ``params`` -- what to pass to ``get_codec``;
* ``shapes`` -- a Hypothesis strategy drawing small shapes the codec accepts;
* ``example_shapes`` -- a few accepted shapes for the deterministic checks;
* ``refused`` -- shapes the codec must refuse, each with a fragment of the rule its
  ShapeError has to name;
* ``scales`` / ``good_scale`` -- scales the codec stores exactly;
* ``expected_nbytes`` -- the size formula from spec/codecs.md, written independently
  of the codec, and ``known_sizes`` -- sizes quoted in the docs;
* ``large_shape`` -- one bigger tensor (about a million weights) for a single round trip.

Mixins add the checks that only some codecs share (safetensors weight arrays, GGUF
bytes, f32 trailers, 2-bit codes, exact f32 scales). No class here starts with
``Test``, so pytest collects the checks only through the codec subclasses.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitpack.codecs import (
    CodecError,
    CorruptDataError,
    ScaleError,
    ShapeError,
    get_codec,
    list_codecs,
)

Shape = tuple[int, int]

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO_ROOT / "fixtures" / "codec_golden"
# Byte-identical copies of the upstream tools' output (fixtures/upstream_golden/README.md).
UPSTREAM_DIR = REPO_ROOT / "fixtures" / "upstream_golden"
# Where they were copied from; optional (CI has /path/main beside /path/shared, a clone has not).
SHARED_GOLDEN = REPO_ROOT.parent / "shared" / "golden"

KINDS = ("random", "zeros", "plus", "minus", "sparse")


# -- data helpers --------------------------------------------------------------------
def make_ternary(shape: Shape, kind: str = "random", seed: int = 0) -> np.ndarray:
    """An int8 ternary tensor of ``shape``: random, all 0, all +1, all -1, or sparse
    (about 1% non-zero, so most 256-element blocks are all zero)."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.integers(-1, 2, size=shape, dtype=np.int8)
    if kind == "zeros":
        return np.zeros(shape, dtype=np.int8)
    if kind == "plus":
        return np.ones(shape, dtype=np.int8)
    if kind == "minus":
        return np.full(shape, -1, dtype=np.int8)
    if kind == "sparse":
        t = np.zeros(shape, dtype=np.int8)
        hit = rng.random(shape) < 0.01
        t[hit] = rng.choice(np.array([-1, 1], dtype=np.int8), size=int(hit.sum()))
        return t
    raise ValueError(kind)


def f32_bits(x: Any) -> int:
    return int(np.asarray(x, dtype=np.float32).reshape(()).view(np.uint32))


def f32_le(x: float) -> bytes:
    return struct.pack("<f", x)


def f16_value(bits: int) -> np.float32:
    """The f16 with bit pattern ``bits``, as an f32 scalar."""
    return np.uint16(bits).view(np.float16).astype(np.float32)


def pad(x: int, a: int) -> int:
    return -(-x // a) * a


# Scale strategies.
ANY_F32 = st.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32)
POSITIVE_F16 = st.integers(1, 0x7BFF).map(f16_value)  # subnormal .. 65504


class CodecSuite:
    """Checks every codec passes; subclasses set the class attributes below."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}
    container: ClassVar[str]
    shapes: ClassVar[st.SearchStrategy]
    example_shapes: ClassVar[list[Shape]]
    refused: ClassVar[list[tuple[Shape, str]]] = []
    scales: ClassVar[st.SearchStrategy]
    good_scale: ClassVar[Any]
    large_shape: ClassVar[Shape]  # about a million weights, odd sizes where allowed
    known_sizes: ClassVar[dict[Shape, int]]  # nbytes quoted in formats/README.md

    # Shapes no 2-D weight codec accepts; the error must quote the shape it got.
    generic_refused: ClassVar[list[tuple[Any, str]]] = [
        ((0, 256), "(0, 256)"),
        ((4, 0), "(4, 0)"),
        ((-4, 256), "(-4, 256)"),
        ((256,), "(256,)"),
        ((2, 4, 256), "(2, 4, 256)"),
    ]

    # -- hooks -----------------------------------------------------------------------
    def codec(self):
        return get_codec(self.name, **self.params)

    def ternary(self, shape: Shape, kind: str = "random", seed: int = 0) -> np.ndarray:
        """Test data this codec stores exactly (binary codecs override it)."""
        return make_ternary(shape, kind, seed)

    def expected_nbytes(self, m: int, k: int) -> int:
        raise NotImplementedError

    def decode(self, codec, buf, shape, scale):
        """Decode as a user would for this container (overridden for safetensors)."""
        return codec.decode(buf, shape)

    def check_scale(self, got, given, t: np.ndarray) -> None:
        """The decoded scale for a tensor encoded with ``given`` (overridden by TQ)."""
        assert isinstance(got, np.float32), type(got)
        assert f32_bits(got) == f32_bits(given), (got, given)

    @classmethod
    def refused_cases(cls) -> list[tuple[Any, str]]:
        return cls.generic_refused + cls.refused

    # -- identity ----------------------------------------------------------------------
    def test_identity(self):
        codec = self.codec()
        assert codec.name == self.name
        assert self.name in list_codecs()
        assert codec.container == self.container
        assert codec.get_config() == {"id": self.name, **self.params}

    # -- round trip --------------------------------------------------------------------
    @given(data=st.data())
    def test_round_trip(self, data):
        codec = self.codec()
        shape = data.draw(self.shapes, label="shape")
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        scale = data.draw(self.scales, label="scale")
        t = self.ternary(shape, kind, seed)
        buf = codec.encode(t, scale)
        assert isinstance(buf, np.ndarray)
        assert buf.nbytes == codec.nbytes(shape) == self.expected_nbytes(*shape)
        got, got_scale = self.decode(codec, buf, shape, scale)
        assert got.dtype == np.int8
        assert got.shape == shape
        np.testing.assert_array_equal(got, t)
        self.check_scale(got_scale, scale, t)

    def test_round_trip_large(self):
        codec = self.codec()
        t = self.ternary(self.large_shape, "random", 99)
        buf = codec.encode(t, self.good_scale)
        assert buf.nbytes == self.expected_nbytes(*self.large_shape)
        got, got_scale = self.decode(codec, buf, self.large_shape, self.good_scale)
        np.testing.assert_array_equal(got, t)
        self.check_scale(got_scale, self.good_scale, t)

    def test_known_sizes(self):
        codec = self.codec()
        assert self.known_sizes
        for shape, size in self.known_sizes.items():
            assert codec.nbytes(shape) == size == self.expected_nbytes(*shape), shape

    @pytest.mark.parametrize("kind", ["zeros", "plus", "minus"])
    def test_round_trip_constant(self, example_shape, kind):
        codec = self.codec()
        t = self.ternary(example_shape, kind)
        buf = codec.encode(t, self.good_scale)
        got, got_scale = self.decode(codec, buf, example_shape, self.good_scale)
        np.testing.assert_array_equal(got, t)
        self.check_scale(got_scale, self.good_scale, t)

    def test_encode_is_deterministic_and_data_dependent(self, example_shape):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 1)
        a = codec.encode(t, self.good_scale)
        b = codec.encode(t.copy(), self.good_scale)
        np.testing.assert_array_equal(a, b)
        flipped = t.copy()
        flipped[-1, -1] = 1 if t[-1, -1] != 1 else -1
        assert not np.array_equal(codec.encode(flipped, self.good_scale), a)

    # -- sizes ---------------------------------------------------------------------------
    def test_nbytes_and_bits_per_weight(self, example_shape):
        codec = self.codec()
        m, k = example_shape
        n = codec.nbytes(example_shape)
        assert isinstance(n, int)
        assert n == self.expected_nbytes(m, k)
        assert codec.encode(self.ternary(example_shape), self.good_scale).nbytes == n
        assert codec.bits_per_weight(example_shape) == pytest.approx(8.0 * n / (m * k), rel=1e-12)

    def test_check_returns_shape(self, example_shape):
        codec = self.codec()
        m, k = example_shape
        assert codec.check((m, k)) == (m, k)
        assert codec.check([np.int64(m), np.int64(k)]) == (m, k)
        assert codec.check(np.array([m, k])) == (m, k)

    # -- shape refusals ------------------------------------------------------------------
    def test_refused_shape(self, refused_case):
        shape, rule = refused_case
        codec = self.codec()
        for call in (codec.check, codec.nbytes, codec.bits_per_weight, codec.for_shape):
            with pytest.raises(ShapeError) as err:
                call(shape)
            assert rule in str(err.value), (call.__name__, str(err.value))
        with pytest.raises(ShapeError):
            codec.decode(b"\x00" * 64, shape)
        if min(shape) >= 0:  # a tensor of that shape can be built: encode refuses it too
            with pytest.raises(ShapeError) as err:
                codec.encode(np.zeros(shape, dtype=np.int8), self.good_scale)
            assert rule in str(err.value)

    def test_non_integral_dimension_refused(self):
        """A dimension like 32.5 is not a shape; it must not be truncated to 32."""
        codec = self.codec()
        m, k = self.example_shapes[0]
        for shape in ((m + 0.5, k), (m, k + 0.5)):
            with pytest.raises(ShapeError):
                codec.check(shape)
            with pytest.raises(ShapeError):
                codec.nbytes(shape)

    @pytest.mark.parametrize("buf", ["text", None, 12, [1, 2, 3], 1.5])
    def test_decode_refuses_non_buffers(self, buf):
        with pytest.raises(CodecError):
            self.codec().decode(buf, self.example_shapes[0])

    # -- corrupt buffers -----------------------------------------------------------------
    def test_wrong_length_refused(self, example_shape):
        codec = self.codec()
        buf = codec.encode(self.ternary(example_shape, "random", 2), self.good_scale)
        raw = buf.tobytes()
        for bad in (raw[:-1], raw[: len(raw) // 2], b"", raw + b"\x00", raw + raw[:32]):
            with pytest.raises(CorruptDataError):
                codec.decode(bad, example_shape)
        with pytest.raises(CorruptDataError):
            codec.decode(buf.reshape(-1)[:-1].copy(), example_shape)

    # -- invalid input codes ---------------------------------------------------------------
    @pytest.mark.parametrize(
        "dtype,value",
        [
            (np.int8, 2), (np.int8, -2), (np.int8, 127), (np.int8, -128),
            (np.int16, 257), (np.int16, -255), (np.int32, 2), (np.int32, 255),
            (np.int64, -2), (np.int64, 2**40 + 1), (np.uint8, 255), (np.uint8, 2),
        ],
    )
    @pytest.mark.parametrize("where", ["first", "last"])
    def test_out_of_range_codes_refused(self, dtype, value, where):
        codec = self.codec()
        shape = self.example_shapes[0]
        t = self.ternary(shape, "zeros").astype(dtype)
        t[(0, 0) if where == "first" else (-1, -1)] = value
        with pytest.raises(CodecError):
            codec.encode(t, self.good_scale)

    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64])
    def test_float_codes_refused(self, dtype):
        codec = self.codec()
        t = self.ternary(self.example_shapes[0], "random", 3).astype(dtype)
        with pytest.raises(CodecError):
            codec.encode(t, self.good_scale)

    # -- scales -------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "scale", [np.float32("nan"), np.float32("inf"), np.float32("-inf"), float("inf"), float("nan")]
    )
    def test_nonfinite_scale_refused(self, scale):
        codec = self.codec()
        with pytest.raises(CodecError):
            codec.encode(self.ternary(self.example_shapes[0], "random", 4), scale)

    def test_inexact_python_float_scale_refused(self):
        codec = self.codec()
        with pytest.raises(ScaleError):
            codec.encode(self.ternary(self.example_shapes[0], "random", 5), 0.1)

    @pytest.mark.parametrize("scale", ["1.0", object(), b"\x00\x00\x80\x3f"])
    def test_non_numeric_scale_refused(self, scale):
        codec = self.codec()
        with pytest.raises(CodecError):
            codec.encode(self.ternary(self.example_shapes[0], "random", 6), scale)

    # -- configuration ------------------------------------------------------------------
    def test_config_round_trip(self, example_shape):
        codec = self.codec()
        config = codec.get_config()
        assert json.loads(json.dumps(config)) == config
        rebuilt = get_codec(json.loads(json.dumps(config)))
        assert rebuilt == codec
        assert hash(rebuilt) == hash(codec)
        assert type(rebuilt) is type(codec)
        bound = codec.for_shape(example_shape)
        bound_config = bound.get_config()
        assert bound_config["id"] == self.name
        assert json.loads(json.dumps(bound_config)) == bound_config
        assert get_codec(bound_config) == bound
        t = self.ternary(example_shape, "random", 7)
        want = codec.encode(t, self.good_scale)
        np.testing.assert_array_equal(rebuilt.encode(t, self.good_scale), want)
        np.testing.assert_array_equal(get_codec(bound_config).encode(t, self.good_scale), want)

    def test_repr(self):
        codec = self.codec()
        text = repr(codec)
        assert isinstance(text, str) and text and "\n" not in text
        for key, value in self.params.items():
            assert f"{key}={value!r}" in text

    # -- inputs are not modified, outputs are not views of inputs ----------------------------
    def test_encode_leaves_codes_alone(self, example_shape):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 8)
        keep = t.copy()
        out = codec.encode(t, self.good_scale)
        np.testing.assert_array_equal(t, keep)
        assert not np.shares_memory(out, t)
        out[...] = 0  # the caller owns the result
        np.testing.assert_array_equal(t, keep)

    def test_decode_leaves_buffer_alone(self, example_shape):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 9)
        buf = codec.encode(t, self.good_scale)
        keep = buf.copy()
        got, _ = self.decode(codec, buf, example_shape, self.good_scale)
        np.testing.assert_array_equal(buf, keep)
        assert not np.shares_memory(got, buf)
        assert got.flags.writeable
        got[...] = 0
        np.testing.assert_array_equal(buf, keep)
        again, _ = self.decode(codec, buf, example_shape, self.good_scale)
        np.testing.assert_array_equal(again, t)
        mutable = bytearray(keep.tobytes())
        got, _ = self.decode(codec, mutable, example_shape, self.good_scale)
        assert bytes(mutable) == keep.tobytes()
        np.testing.assert_array_equal(got, t)

    # -- accepted input types --------------------------------------------------------------
    @pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.intp])
    def test_wider_integer_codes(self, example_shape, dtype):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 10)
        want = codec.encode(t, self.good_scale)
        np.testing.assert_array_equal(codec.encode(t.astype(dtype), self.good_scale), want)

    def test_non_contiguous_codes(self, example_shape):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 11)
        want = codec.encode(t, self.good_scale)
        transposed = np.ascontiguousarray(t.T).T  # Fortran order, a transposed view
        assert not transposed.flags.c_contiguous or min(t.shape) == 1
        np.testing.assert_array_equal(codec.encode(transposed, self.good_scale), want)
        wide = np.zeros((t.shape[0], 2 * t.shape[1]), dtype=np.int8)
        wide[:, ::2] = t
        strided = wide[:, ::2]
        assert not strided.flags.c_contiguous
        np.testing.assert_array_equal(codec.encode(strided, self.good_scale), want)
        np.testing.assert_array_equal(codec.encode(t.astype(np.int32).T.T, self.good_scale), want)
        readonly = t.copy()
        readonly.flags.writeable = False
        np.testing.assert_array_equal(codec.encode(readonly, self.good_scale), want)
        shifted = np.zeros(t.size + 1, dtype=np.int8)  # contiguous but not word-aligned
        shifted[1:] = t.reshape(-1)
        np.testing.assert_array_equal(codec.encode(shifted[1:].reshape(t.shape), self.good_scale), want)

    def test_decode_buffer_types(self, example_shape):
        codec = self.codec()
        t = self.ternary(example_shape, "random", 12)
        buf = codec.encode(t, self.good_scale)
        raw = buf.tobytes()
        doubled = np.zeros(2 * len(raw), dtype=np.uint8)
        doubled[::2] = np.frombuffer(raw, dtype=np.uint8)
        readonly = np.frombuffer(raw, dtype=np.uint8)
        assert not readonly.flags.writeable
        shifted = np.zeros(len(raw) + 1, dtype=np.uint8)
        shifted[1:] = readonly
        for form in (
            raw,
            bytearray(raw),
            memoryview(raw),
            memoryview(bytearray(raw)),
            buf,
            np.frombuffer(raw, dtype=np.uint8).copy(),
            readonly,
            doubled[::2],  # a non-contiguous array view
            shifted[1:],  # contiguous but not word-aligned
            memoryview(raw)[0:],
        ):
            got, _ = self.decode(codec, form, example_shape, self.good_scale)
            np.testing.assert_array_equal(got, t, err_msg=type(form).__name__)


# -- container mixins ----------------------------------------------------------------------
class SafetensorsChecks:
    """Codecs whose result is a safetensors weight array; the scale is its own tensor."""

    container = "safetensors"

    def stored(self, m: int, k: int) -> tuple[tuple[int, ...], np.dtype]:
        raise NotImplementedError

    def decode(self, codec, buf, shape, scale):
        return codec.decode(buf, shape, scale)

    def test_stored_shape_and_dtype(self, example_shape):
        codec = self.codec()
        want_shape, want_dtype = self.stored(*example_shape)
        assert tuple(codec.stored_shape(example_shape)) == want_shape
        assert np.dtype(codec.stored_dtype) == want_dtype
        out = codec.encode(make_ternary(example_shape, "random", 13), self.good_scale)
        assert out.shape == want_shape
        assert out.dtype == want_dtype
        assert out.flags.c_contiguous

    def test_decode_returns_given_scale(self, example_shape):
        codec = self.codec()
        t = make_ternary(example_shape, "random", 14)
        buf = codec.encode(t, np.float32(2.5))
        got, scale = codec.decode(buf, example_shape)
        np.testing.assert_array_equal(got, t)
        assert scale is None
        got, scale = codec.decode(buf, example_shape, np.float32(0.37))
        assert isinstance(scale, np.float32) and scale == np.float32(0.37)
        got, scale = codec.decode(buf, example_shape, 0.5)
        assert isinstance(scale, np.float32) and scale == 0.5

    @pytest.mark.parametrize("scale", [np.float32("nan"), np.float32("inf")])
    def test_decode_refuses_nonfinite_scale(self, example_shape, scale):
        codec = self.codec()
        buf = codec.encode(make_ternary(example_shape, "random", 15), self.good_scale)
        with pytest.raises(CodecError):
            codec.decode(buf, example_shape, scale)


class GGUFChecks:
    """Codecs whose result is the flat tensor data a GGUF runtime reads."""

    container = "gguf"

    def test_flat_uint8_of_nbytes(self, example_shape):
        codec = self.codec()
        out = codec.encode(self.ternary(example_shape, "random", 16), self.good_scale)
        assert out.dtype == np.uint8
        assert out.ndim == 1
        assert out.size == codec.nbytes(example_shape)


class F32ScaleChecks:
    """Codecs that keep any finite f32 scale exactly (int8, i2_packed, hf_packed, i2_s, tl*)."""

    scales = ANY_F32
    good_scale = np.float32(0.1)  # not a Python float: np.float32(0.1) is exact

    @pytest.mark.parametrize(
        "scale",
        [np.float32(0.1), 0.5, np.float32(-0.0), np.float32(3.4028235e38),
         np.float32(1e-45), np.float32(-7.25), np.float64(np.float32(0.3)), np.float16(0.1)],
        ids=repr,
    )
    def test_exact_f32_scales_kept(self, scale):
        codec = self.codec()
        shape = self.example_shapes[0]
        t = make_ternary(shape, "random", 17)
        got, got_scale = self.decode(codec, codec.encode(t, scale), shape, scale)
        np.testing.assert_array_equal(got, t)
        assert isinstance(got_scale, np.float32)
        assert f32_bits(got_scale) == f32_bits(np.float32(scale))


class TrailerChecks:
    """I2_S, TL1, TL2: the data ends in 32 bytes -- f32 scale, then 28 zero bytes."""

    def trailer_offset(self, m: int, k: int) -> int:
        raise NotImplementedError

    def test_trailer_layout(self, example_shape):
        codec = self.codec()
        at = self.trailer_offset(*example_shape)
        out = codec.encode(make_ternary(example_shape, "random", 18), np.float32(-1.5546875))
        assert at + 32 == out.size
        assert out[at : at + 4].tobytes() == f32_le(-1.5546875)
        assert not out[at + 4 :].any()

    @pytest.mark.parametrize("fill", [0x01, 0xAB, 0xFF])
    def test_stale_trailer_bytes_ignored(self, example_shape, fill):
        codec = self.codec()
        t = make_ternary(example_shape, "random", 19)
        at = self.trailer_offset(*example_shape)
        buf = codec.encode(t, np.float32(0.75))
        buf[at + 4 :] = fill  # llama-quantize leaves stale bytes 4..31
        got, scale = codec.decode(buf, example_shape)
        np.testing.assert_array_equal(got, t)
        assert scale == np.float32(0.75)
        buf[at + 4 : at + 8] = np.frombuffer(f32_le(9.0), dtype=np.uint8)  # legacy: scale again
        assert codec.decode(buf, example_shape)[1] == np.float32(0.75)

    @pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
    def test_nonfinite_trailer_scale_refused(self, example_shape, bad):
        codec = self.codec()
        buf = codec.encode(make_ternary(example_shape, "random", 20), np.float32(1.0))
        at = self.trailer_offset(*example_shape)
        buf[at : at + 4] = np.frombuffer(f32_le(bad), dtype=np.uint8)
        with pytest.raises(CorruptDataError):
            codec.decode(buf, example_shape)


class TwoBitChecks:
    """Codecs with 2-bit codes c = t + 1, where code 3 never occurs in valid data."""

    def code_bytes(self, m: int, k: int) -> np.ndarray:
        """Indices of the bytes that hold 2-bit codes."""
        raise NotImplementedError

    def test_code3_refused_everywhere(self, example_shape):
        codec = self.codec()
        clean = codec.encode(make_ternary(example_shape, "random", 21), self.good_scale)
        positions = self.code_bytes(*example_shape)
        # first bytes, both sides of 2/4/8-byte word edges, the middle and the last byte
        picks = sorted({int(positions[i]) for i in (0, 1, 3, 4, 7, 8, 15, 16, len(positions) // 2, -1)
                        if -len(positions) <= i < len(positions)})
        for at in picks:
            for pair in range(4):
                buf = clean.copy().reshape(-1)
                buf[at] |= np.uint8(3 << (2 * pair))
                with pytest.raises(CorruptDataError):
                    codec.decode(buf.reshape(clean.shape), example_shape)
        buf = clean.copy().reshape(-1)
        buf[positions] = 0xFF
        with pytest.raises(CorruptDataError):
            codec.decode(buf, example_shape)

    def test_0x55_is_all_zero(self, example_shape):
        codec = self.codec()
        out = codec.encode(make_ternary(example_shape, "zeros"), self.good_scale).reshape(-1)
        positions = self.code_bytes(*example_shape)
        assert (out[positions] == 0x55).all()


# =========================================================================================
# Group-scale codecs (formats-2026.md §1-4, §7): q2_0, q1_0, pq2_0, ptq1_0
# =========================================================================================
GOLDEN_2026 = FIXTURES_DIR / "2026"  # copies of shared/golden/2026 (fixtures/codec_golden/2026/README.md)


def group_shapes(g: int) -> st.SearchStrategy:
    """Small shapes whose rows are whole groups of ``g``."""
    return st.tuples(st.integers(1, 5), st.integers(1, 4).map(lambda n: g * n))


def f16_scales(shape: Shape, seed: int) -> np.ndarray:
    """Positive f16-representable scales, log-uniform in [2^-9, 2^-1] like the golden data."""
    rng = np.random.default_rng(seed)
    return np.exp2(rng.uniform(-9, -1, size=shape)).astype(np.float16).astype(np.float32)


class GroupScaleChecks(GGUFChecks):
    """One f16 scale d per block of ``group_size`` weights; decode gives (M, K/g) scales."""

    group_size: ClassVar[int]
    block_bytes: ClassVar[int]
    d_offset: ClassVar[int]  # byte of d inside a block
    zero_block: ClassVar[bytes]  # an all-zero group, as the upstream quantizer writes it
    golden: ClassVar[tuple[str, ...]]  # golden file name prefixes (fixtures/codec_golden/2026)
    binary: ClassVar[bool] = False  # q1_0: a group cannot mix zeros and nonzeros
    scales = POSITIVE_F16
    good_scale = np.float32(1.5546875)
    large_shape = (259, 4352)

    def expected_nbytes(self, m: int, k: int) -> int:
        return m * (k // self.group_size) * self.block_bytes

    def check_scale(self, got, given, t):
        g = self.group_size
        assert isinstance(got, np.ndarray) and got.dtype == np.float32, type(got)
        nonzero = t.reshape(t.shape[0], -1, g).any(axis=2)
        want = np.where(nonzero, np.float32(given), np.float32(0))
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # +0, never -0

    def d_offsets(self, m: int, k: int) -> np.ndarray:
        return np.arange(m * k // self.group_size) * self.block_bytes + self.d_offset

    def block_d(self, buf: np.ndarray, m: int, k: int) -> np.ndarray:
        at = self.d_offsets(m, k)
        flat = buf.reshape(-1)
        d = (flat[at].astype(np.uint16) | (flat[at + 1].astype(np.uint16) << 8)).view(np.float16)
        return d.reshape(m, k // self.group_size)

    def groups_with_zeros(self, shape: Shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Data with some all-zero groups, and the bool (M, K/g) map of nonzero groups."""
        m, k = shape
        t = self.ternary(shape, "random", seed)
        rng = np.random.default_rng(seed)
        nonzero = rng.random((m, k // self.group_size)) < 0.6
        nonzero[0, 0] = False
        t.reshape(m, -1, self.group_size)[~nonzero] = 0
        return t, t.reshape(m, -1, self.group_size).any(axis=2)

    def test_declares_group_scales(self):
        codec = self.codec()
        assert (codec.scale_granularity, codec.group_size, codec.scale_dtype) == ("group", self.group_size, "f16")
        assert codec.type_ids and codec.file_types

    def test_per_group_scales_round_trip(self):
        codec = self.codec()
        shape = (3, 4 * self.group_size)
        t, nonzero = self.groups_with_zeros(shape, 40)
        scales = f16_scales((3, 4), 41)
        scales[~nonzero] = 7.0  # carries nothing: written as +0
        buf = codec.encode(t, scales)
        want = np.where(nonzero, scales, np.float32(0))
        np.testing.assert_array_equal(self.block_d(buf, *shape).astype(np.float32), want)
        got, got_scales = codec.decode(buf, shape)
        np.testing.assert_array_equal(got, t)
        assert got_scales.dtype == np.float32 and got_scales.shape == (3, 4)
        np.testing.assert_array_equal(got_scales.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(codec.encode(got, got_scales), buf)  # decoded form re-encodes

    def test_row_and_tensor_scales_refine(self):
        codec = self.codec()
        shape = (3, 2 * self.group_size)
        t = self.ternary(shape, "random", 42)
        rows = np.array([[0.5], [0.25], [1.5546875]], dtype=np.float32)
        np.testing.assert_array_equal(codec.encode(t, rows), codec.encode(t, np.repeat(rows, 2, axis=1)))
        np.testing.assert_array_equal(codec.encode(t, rows.reshape(3)), codec.encode(t, rows))
        np.testing.assert_array_equal(codec.encode(t, 0.5), codec.encode(t, np.full((3, 2), 0.5, np.float32)))

    def test_coarsening_refused_naming_row_and_group(self):
        codec = self.codec()
        shape = (3, 4 * self.group_size)
        t = self.ternary(shape, "plus")
        fine = np.full((3, 8), 0.5, dtype=np.float32)  # two scales per group
        np.testing.assert_array_equal(codec.encode(t, fine), codec.encode(t, 0.5))  # uniform: exact
        fine[2, 5] = 0.25  # row 2, group 2 now holds two different scales
        with pytest.raises(ScaleError) as err:
            codec.encode(t, fine)
        assert "row 2" in str(err.value) and "group 2" in str(err.value), str(err.value)
        if not self.binary:
            t[2, 5 * self.group_size // 2 : 6 * self.group_size // 2] = 0  # the odd half is all zero
            codec.encode(t, fine)  # its scale carries nothing: exact again

    def test_f16_inexact_refused_naming_row_and_group(self):
        codec = self.codec()
        shape = (2, 3 * self.group_size)
        t = self.ternary(shape, "minus")
        scales = np.full((2, 3), 0.5, dtype=np.float32)
        scales[1, 2] = np.float32(0.1)
        with pytest.raises(ScaleError) as err:
            codec.encode(t, scales)
        assert "row 1" in str(err.value) and "group 2" in str(err.value), str(err.value)
        for scale in (np.float32(0.1), np.float32(70000.0), np.float32(1e-8), np.float32(1 + 2**-11)):
            with pytest.raises(ScaleError):
                codec.encode(t, scale)

    @pytest.mark.parametrize("scale", [2.0**-24, 2.0**-14, 65504.0, 0.0419921875], ids=repr)
    def test_f16_scales_kept(self, scale):
        codec = self.codec()
        shape = (2, 2 * self.group_size)
        t = self.ternary(shape, "random", 43)
        buf = codec.encode(t, np.float32(scale))
        assert (self.block_d(buf, *shape) == np.float16(scale)).all()
        self.check_scale(codec.decode(buf, shape)[1], np.float32(scale), t)

    @pytest.mark.parametrize(
        "scale",
        [pytest.param(np.ones((3, 2), np.float32), id="rows"),
         pytest.param(np.ones((2, 3), np.float32), id="3-groups"),
         pytest.param(np.ones((2, 1, 1), np.float32), id="3d")],
    )
    def test_scale_of_wrong_shape_refused(self, scale):
        with pytest.raises(CodecError):
            self.codec().encode(self.ternary((2, 2 * self.group_size), "random", 44), scale)

    def test_zero_groups_written_as_upstream(self):
        codec = self.codec()
        shape = (2, 3 * self.group_size)
        blocks = codec.encode(self.ternary(shape, "zeros"), self.good_scale).reshape(-1, self.block_bytes)
        assert all(block.tobytes() == self.zero_block for block in blocks)
        # a nonzero group with scale 0 is t x 0 = all zero upstream: the same bytes
        t = self.ternary(shape, "plus")
        scales = np.full((2, 3), 0.5, dtype=np.float32)
        scales[1, 1] = 0.0
        scales[0, 2] = -0.0
        buf = codec.encode(t, scales).reshape(2, 3, self.block_bytes)
        assert buf[1, 1].tobytes() == self.zero_block and buf[0, 2].tobytes() == self.zero_block
        got, got_scales = codec.decode(buf, shape)
        assert not got[1, self.group_size : 2 * self.group_size].any() and got_scales[1, 1] == 0

    def test_decode_normal_form(self):
        codec = self.codec()
        shape = (2, 2 * self.group_size)
        t, _ = self.groups_with_zeros(shape, 45)
        t[1] = self.ternary((1, shape[1]), "plus")
        buf = codec.encode(t, self.good_scale)
        at = self.d_offsets(*shape)
        for bits in (0x0000, 0x8000):  # d = +0 or -0 on a nonzero group: codes 0, scale +0
            bad = buf.copy()
            bad[at[2] : at[2] + 2] = np.frombuffer(struct.pack("<H", bits), dtype=np.uint8)
            got, scales = codec.decode(bad, shape)
            assert not got[1, : self.group_size].any()
            assert f32_bits(scales[1, 0]) == 0
            np.testing.assert_array_equal(got[1, self.group_size :], t[1, self.group_size :])
        bad = buf.copy()  # group (0, 0) is all zero; a d there carries nothing
        bad[at[0] : at[0] + 2] = np.frombuffer(np.float16(7.0).tobytes(), dtype=np.uint8)
        got, scales = codec.decode(bad, shape)
        if self.binary:  # Q1_0 cannot store zeros: its zero group is bits 1, which now mean +7
            assert (got[0, : self.group_size] == 1).all() and scales[0, 0] == 7.0
        else:
            np.testing.assert_array_equal(got, t)
            assert f32_bits(scales[0, 0]) == 0

    @pytest.mark.parametrize("bits", [0xBC00, 0x8001, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0xFFFF])
    def test_bad_stored_scale_refused_naming_block(self, bits):
        codec = self.codec()
        shape = (2, 3 * self.group_size)
        buf = codec.encode(self.ternary(shape, "random", 46), self.good_scale)
        at = int(self.d_offsets(*shape)[4])  # row 1, group 1
        buf[at : at + 2] = np.frombuffer(struct.pack("<H", bits), dtype=np.uint8)
        with pytest.raises(CorruptDataError) as err:
            codec.decode(buf, shape)
        assert "block 4" in str(err.value) and "row 1, group 1" in str(err.value), str(err.value)


# -- end of the group-scale section ------------------------------------------------------------
class TQChecks(GGUFChecks):
    """TQ1_0 and TQ2_0: 256-element blocks along each row, each ending in an f16 d."""

    block_bytes: ClassVar[int]
    shapes = st.tuples(st.integers(1, 5), st.integers(1, 4).map(lambda n: 256 * n))
    example_shapes = [(1, 256), (3, 512)]
    large_shape = (259, 4352)
    refused = [
        ((1, 8640), "K = 8640 is not a multiple of 256"),
        ((4, 128), "K = 128 is not a multiple of 256"),
        ((2, 300), "K = 300 is not a multiple of 256"),
    ]

    def expected_nbytes(self, m: int, k: int) -> int:
        return m * (k // 256) * self.block_bytes

    def d_offsets(self, m: int, k: int) -> np.ndarray:
        """Byte offset of every block's d (blocks in row-major order)."""
        return np.arange(m * k // 256) * self.block_bytes + self.block_bytes - 2

    def block_d(self, buf: np.ndarray, m: int, k: int) -> np.ndarray:
        at = self.d_offsets(m, k)
        flat = buf.reshape(-1)
        return (flat[at].astype(np.uint16) | (flat[at + 1].astype(np.uint16) << 8)).view(np.float16)

    def test_bits_per_weight_constant(self, example_shape):
        assert self.codec().bits_per_weight(example_shape) == 8 * self.block_bytes / 256

    @pytest.mark.parametrize("bits", [0x7C00, 0xFC00, 0x7E00, 0xFFFF])
    @pytest.mark.parametrize("block", [0, -1])
    def test_nonfinite_block_scale_refused(self, example_shape, bits, block):
        codec = self.codec()
        buf = codec.encode(make_ternary(example_shape, "random", 30), self.good_scale)
        at = int(self.d_offsets(*example_shape)[block])
        buf[at : at + 2] = np.frombuffer(struct.pack("<H", bits), dtype=np.uint8)
        with pytest.raises(CorruptDataError):
            codec.decode(buf, example_shape)

    def test_all_zero_block_scale_ignored(self):
        codec = self.codec()
        shape = (2, 512)
        t = make_ternary(shape, "random", 31)
        t[0, :256] = 0  # block 0 carries no scale information
        buf = codec.encode(t, self.good_scale)
        at = int(self.d_offsets(*shape)[0])
        buf[at : at + 2] = np.frombuffer(np.float16(7.0).tobytes(), dtype=np.uint8)
        got, scale = codec.decode(buf, shape)
        np.testing.assert_array_equal(got, t)
        assert isinstance(scale, np.float32)
        assert scale == np.float32(self.good_scale)


class TQBakedChecks(TQChecks):
    """scale_mode='baked': d = f16(s) in blocks holding a non-zero, 0 in all-zero blocks."""

    params = {"scale_mode": "baked"}
    scales = POSITIVE_F16
    good_scale = np.float32(1.5546875)

    def check_scale(self, got, given, t):
        assert isinstance(got, np.float32), type(got)
        # an all-zero tensor holds only d = 0, so that is all its bytes can say
        assert got == (np.float32(given) if t.any() else np.float32(0.0)), (got, given)

    def test_block_scales_written(self):
        codec = self.codec()
        shape = (3, 768)
        t = make_ternary(shape, "random", 32)
        t[0, 256:512] = 0
        t[2] = 0
        d = self.block_d(codec.encode(t, np.float32(0.0419921875)), *shape).reshape(3, 3)
        nonzero = t.reshape(3, 3, 256).any(axis=2)
        assert (d[nonzero] == np.float16(0.0419921875)).all()
        assert (d[~nonzero].view(np.uint16) == 0).all()  # +0.0, bytes 00 00

    @pytest.mark.parametrize(
        "scale", [np.float32(0.1), np.float32(65520.0), np.float32(70000.0), np.float32(1e-8),
                  np.float32(1 + 2**-11), np.float32(0.03937802)], ids=repr,
    )
    def test_scale_f16_cannot_hold_refused(self, scale):
        with pytest.raises(ScaleError):
            self.codec().encode(make_ternary(self.example_shapes[0], "random", 33), scale)

    @pytest.mark.parametrize(
        "scale",
        [2.0**-24, 2.0**-14, 65504.0, 0.0419921875, 1.5546875, 1.203125, 0.5, np.float32(np.float16(0.1))],
        ids=repr,
    )
    def test_f16_scales_kept(self, scale):
        codec = self.codec()
        shape = (2, 512)
        t = make_ternary(shape, "random", 34)
        buf = codec.encode(t, np.float32(scale))
        assert (self.block_d(buf, *shape) == np.float16(scale)).all()
        got, got_scale = codec.decode(buf, shape)
        np.testing.assert_array_equal(got, t)
        assert isinstance(got_scale, np.float32) and got_scale == np.float32(scale)

    def test_per_block_scales(self):
        codec = self.codec()
        shape = (2, 768)
        t = make_ternary(shape, "random", 35)
        per_block = np.array([[0.5, 1.5546875, 2.0**-14], [65504.0, 0.0419921875, 3.0]], dtype=np.float32)
        buf = codec.encode(t, per_block)
        assert buf.size == codec.nbytes(shape)
        np.testing.assert_array_equal(self.block_d(buf, *shape), per_block.reshape(-1).astype(np.float16))
        got, got_scale = codec.decode(buf, shape)
        np.testing.assert_array_equal(got, t)
        assert isinstance(got_scale, np.ndarray)
        assert got_scale.dtype == np.float32 and got_scale.shape == (2, 3)
        np.testing.assert_array_equal(got_scale, per_block)
        # the decoded (t, per-block scale) encodes back to the same bytes
        np.testing.assert_array_equal(codec.encode(got, got_scale), buf)

    def test_per_block_scales_that_agree_collapse(self):
        codec = self.codec()
        shape = (2, 512)
        t = make_ternary(shape, "random", 36)
        same = np.full((2, 2), 0.75, dtype=np.float32)
        buf = codec.encode(t, same)
        np.testing.assert_array_equal(buf, codec.encode(t, np.float32(0.75)))
        _, scale = codec.decode(buf, shape)
        assert isinstance(scale, np.float32) and scale == np.float32(0.75)

    @pytest.mark.parametrize(
        "per_block,error",
        [
            pytest.param(np.full((2, 3), 0.5, dtype=np.float32), CodecError, id="wrong-shape"),
            pytest.param(np.full((4,), 0.5, dtype=np.float32), CodecError, id="flat"),
            pytest.param(np.array([[0.5, 0.1], [0.5, 0.5]], dtype=np.float32), ScaleError, id="not-f16"),
            pytest.param(np.array([[0.5, np.inf], [0.5, 0.5]], dtype=np.float32), CodecError, id="inf"),
            pytest.param(np.array([[0.5, np.nan], [0.5, 0.5]], dtype=np.float32), CodecError, id="nan"),
            # exactness is judged on the value given, as for a scalar scale: 0.5 + 1e-10 is
            # neither f32 nor f16, even though its f32 rounding (0.5) is f16
            pytest.param(np.array([[0.5 + 1e-10, 0.5], [0.5, 0.5]], dtype=np.float64), ScaleError,
                         id="f64-not-f32"),
            pytest.param([[0.5, 0.5], [0.5, 0.75 + 1e-12]], ScaleError, id="list-not-f32"),
        ],
    )
    def test_bad_per_block_scales_refused(self, per_block, error):
        with pytest.raises(error):
            self.codec().encode(make_ternary((2, 512), "random", 37), per_block)


class TQSeparateChecks(TQChecks):
    """scale_mode='separate': d = 1.0 in every block; the real scale is a tensor of its own."""

    params = {"scale_mode": "separate"}
    scales = st.just(np.float32(1.0))
    good_scale = np.float32(1.0)

    def check_scale(self, got, given, t):
        assert isinstance(got, np.float32), type(got)
        assert got == np.float32(1.0)

    @pytest.mark.parametrize("kind", ["zeros", "sparse", "random"])
    def test_every_block_d_is_one(self, kind):
        codec = self.codec()
        shape = (3, 768)
        buf = codec.encode(make_ternary(shape, kind, 38), 1.0)
        at = self.d_offsets(*shape)
        assert (buf[at] == 0x00).all() and (buf[at + 1] == 0x3C).all()  # f16 1.0 = 00 3C

    @pytest.mark.parametrize(
        "scale", [np.float32(2.0), np.float32(0.5), np.float32(1.5546875), np.float32(-1.0)]
    )
    def test_scale_other_than_one_refused(self, scale):
        with pytest.raises(ScaleError):
            self.codec().encode(make_ternary((1, 256), "random", 39), scale)


# =========================================================================================
# Row-scale codecs (ik_llama.cpp IQ1_BN, IQ2_BN, IQ2_BN_R4) and the 2026 golden files.
# formats-2026.md §5, §7; owned by the ik-codecs work. Group-scale mixins live elsewhere.
# =========================================================================================
POSITIVE_F32 = st.floats(min_value=float(np.float32(1e-45)), max_value=float(np.finfo(np.float32).max), width=32).map(
    np.float32)


def normal_form(codes: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """formats-2026 §7.2 for per-group, per-row or per-tensor scales: a stored 0 means codes 0
    and scale +0; a group (row, tensor) whose codes are all 0 has scale +0."""
    codes, scales = codes.copy(), scales.astype(np.float32).copy()
    m, k = codes.shape
    grid = scales.reshape(m, -1) if scales.size % m == 0 and scales.size >= m else scales.reshape(1, 1)
    rows, groups = (m, grid.shape[1]) if grid.shape[0] == m else (1, 1)
    blocks = codes.reshape(rows, groups, -1)
    blocks[grid.reshape(rows, groups) == 0] = 0
    grid[grid == 0] = 0  # +0
    grid[~blocks.any(axis=2)] = 0
    return codes, grid.reshape(scales.shape)


class RowScaleChecks(GGUFChecks):
    """Codecs that store one scale per row in ``scale_dtype``, as a prefix of the row's bytes.

    ``scale_offsets(m, k)`` gives the byte offset of every row's stored scale."""

    good_scale = np.float32(1.5546875)
    scale_dtype: ClassVar[str]

    def scale_offsets(self, m: int, k: int) -> np.ndarray:
        raise NotImplementedError

    def stored_scales(self, buf: np.ndarray, m: int, k: int) -> np.ndarray:
        width = 2 if self.scale_dtype == "f16" else 4
        at = self.scale_offsets(m, k)[:, None] + np.arange(width)
        return buf.reshape(-1)[at].copy().view("<f2" if width == 2 else "<f4").reshape(m).astype(np.float32)

    def write_scale(self, buf: np.ndarray, m: int, k: int, row: int, value: float) -> None:
        raw = np.array([value], dtype="<f2" if self.scale_dtype == "f16" else "<f4").view(np.uint8)
        at = int(self.scale_offsets(m, k)[row])
        buf.reshape(-1)[at : at + raw.size] = raw

    def check_scale(self, got, given, t):
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (t.shape[0], 1)
        want = np.where(t.any(axis=1), np.float32(given), np.float32(0)).reshape(-1, 1)
        np.testing.assert_array_equal(got, want)
        assert not np.signbit(got).any()

    def test_declares_row_scales(self):
        codec = self.codec()
        assert codec.scale_granularity == "row" and codec.scale_dtype == self.scale_dtype
        assert set(codec.type_ids) == {"ik-llama"} and set(codec.file_types) == {"ik-llama"}

    def per_row(self, m: int, seed: int) -> np.ndarray:
        """Distinct scales every codec of this kind stores exactly (f16 values)."""
        rng = np.random.default_rng(seed)
        return rng.integers(0x0400, 0x7800, size=(m, 1)).astype(np.uint16).view(np.float16).astype(np.float32)

    def test_per_row_scales_round_trip(self, example_shape):
        codec = self.codec()
        m, k = example_shape
        t = make_ternary(example_shape, "random", 40)
        s = self.per_row(m, 41)
        buf = codec.encode(t, s)
        np.testing.assert_array_equal(self.stored_scales(buf, m, k), s.reshape(-1))
        np.testing.assert_array_equal(codec.encode(t, s.reshape(-1)), buf)  # (M,) is per row too
        got, got_s = codec.decode(buf, example_shape)
        np.testing.assert_array_equal(got, t)
        np.testing.assert_array_equal(got_s, np.where(t.any(axis=1, keepdims=True), s, 0))
        np.testing.assert_array_equal(codec.encode(got, got_s), buf)

    def test_group_scales_uniform_per_row_accepted(self, example_shape):
        codec = self.codec()
        m, k = example_shape
        t = make_ternary(example_shape, "random", 42)
        s = self.per_row(m, 43)
        groups = np.repeat(s, k // 64, axis=1)
        np.testing.assert_array_equal(codec.encode(t, groups), codec.encode(t, s))

    def test_group_scales_that_differ_in_a_row_refused(self):
        codec = self.codec()
        shape = (4, 128)
        t = make_ternary(shape, "plus")
        groups = np.full((4, 2), 0.5, dtype=np.float32)
        groups[2, 1] = 0.75
        with pytest.raises(ScaleError, match="row 2"):
            codec.encode(t, groups)
        t[2, 64:] = 0  # the differing group holds no weight: nothing is lost
        codec.encode(t, groups)

    @pytest.mark.parametrize("bad", [np.float32(-1.0), np.float32(-2.0**-20)])
    def test_negative_scale_refused(self, bad):
        with pytest.raises(ScaleError):
            self.codec().encode(make_ternary(self.example_shapes[0], "random", 44), bad)

    def test_zero_rows_written_as_ik_does(self):
        """An all-zero row (or a row given scale 0) is stored with scale 0 and codes +1
        (formats-2026 §5, §7.2): the same code bytes as an all-+1 row."""
        codec = self.codec()
        m, k = 4, 128
        t = make_ternary((m, k), "random", 45)
        t[1] = 0
        s = self.per_row(m, 46)
        s[3] = 0
        buf = codec.encode(t, s)
        plus = t.copy()
        plus[1] = plus[3] = 1
        s_plus = s.copy()
        s_plus[1] = s_plus[3] = 1.0
        want = codec.encode(plus, s_plus)
        stored = self.stored_scales(buf, m, k)
        assert stored[1] == 0 and stored[3] == 0 and not np.signbit(stored).any()
        for r in (1, 3):
            self.write_scale(want, m, k, r, 0.0)
        np.testing.assert_array_equal(buf, want)
        got, got_s = codec.decode(buf, (m, k))
        t[3] = 0
        np.testing.assert_array_equal(got, t)
        assert got_s[1, 0] == 0 and got_s[3, 0] == 0 and not np.signbit(got_s).any()
        np.testing.assert_array_equal(codec.encode(got, got_s), buf)

    def test_negative_zero_scale_is_plus_zero(self):
        codec = self.codec()
        t = make_ternary((4, 64), "random", 47)
        buf = codec.encode(t, np.float32(-0.0))
        assert not np.signbit(self.stored_scales(buf, 4, 64)).any()
        self.write_scale(buf, 4, 64, 2, -0.0)
        got, got_s = codec.decode(buf, (4, 64))
        assert not got.any() and not got_s.any() and not np.signbit(got_s).any()

    @pytest.mark.parametrize("bad", [-1.0, -2.0**-14, float("inf"), float("-inf"), float("nan")])
    @pytest.mark.parametrize("row", [0, 3])
    def test_bad_stored_scale_refused_naming_the_row(self, bad, row):
        codec = self.codec()
        buf = codec.encode(make_ternary((4, 128), "random", 48), self.good_scale)
        self.write_scale(buf, 4, 128, row, bad)
        with pytest.raises(CorruptDataError, match=f"row {row}"):
            codec.decode(buf, (4, 128))


class Golden2026Checks:
    """Byte equality with the upstream quantizers on the 2026 golden files, committed under
    fixtures/codec_golden/2026/ (copied from shared/golden/2026, whose README says how each
    was made): encode(codes, scales) == bytes, decode(bytes) == the normal form of
    (codes_out, scales_out), and codes x scale == the upstream dequantizer's output."""

    golden: ClassVar[tuple[str, ...]]  # file name prefixes in fixtures/codec_golden/2026

    @classmethod
    def golden_files(cls) -> list[str]:
        files = sorted(p.name for prefix in cls.golden for p in GOLDEN_2026.glob(f"{prefix}_[0-9e]*.npz"))  # not iq2_bn_r4 for iq2_bn
        assert len(files) == 4 * len(cls.golden), files  # three random shapes and one edge file each
        return files

    def golden_data(self, name: str) -> dict[str, np.ndarray]:
        path = GOLDEN_2026 / name
        assert path.is_file(), f"committed golden file {path} is missing"
        with np.load(path) as z:
            return {key: z[key] for key in z.files}

    def test_golden_encode(self, golden_file):
        z = self.golden_data(golden_file)
        codec = self.codec()
        assert int(z["type_id"]) in codec.type_ids.values()
        if codec.scale_granularity == "group":
            assert int(z["block_size"]) == codec.group_size
        if not bool(z["exact"]) and not bool(z["roundtrip"]):  # codes the layout cannot hold (q1_0's zeros)
            with pytest.raises(CodecError):
                codec.encode(z["codes"], z["scales"])
            return
        out = codec.encode(z["codes"], z["scales"])
        assert out.nbytes == z["bytes"].nbytes == codec.nbytes(z["codes"].shape)
        if out.tobytes() != z["bytes"].tobytes():
            at = int(np.flatnonzero(out != z["bytes"])[0])
            pytest.fail(f"{golden_file}: first differing byte {at}: {out[at]:#04x} != {z['bytes'][at]:#04x}")

    def test_golden_decode(self, golden_file):
        z = self.golden_data(golden_file)
        codes, scales = self.codec().decode(z["bytes"], z["codes"].shape)
        want_codes, want_scales = normal_form(z["codes_out"], z["scales_out"])
        np.testing.assert_array_equal(codes, want_codes)
        np.testing.assert_array_equal(np.asarray(scales, dtype=np.float32).reshape(-1), want_scales.reshape(-1))
        assert not np.signbit(scales).any()
        scales = np.asarray(scales, dtype=np.float32)
        if scales.ndim == 2:  # one value per row or group, spread over its columns
            scales = np.repeat(scales, codes.shape[1] // scales.shape[1], axis=1)
        dequant = codes.astype(np.float32) * scales
        np.testing.assert_array_equal(dequant, z["dequant"])
        if bool(z["exact"]):
            np.testing.assert_array_equal(codes, z["codes"])
