"""The codec interface every ternary layout implements (formats/README.md).

A codec turns the canonical ternary tensor -- int8 codes in {-1, 0, +1} of shape
(M, K) = (out_features, in_features) plus a float32 scale -- into the bytes one layout
stores, and back. Codecs know nothing about files or models: the container writes the
bytes, and for safetensors layouts the scale travels as its own tensor.

Subclasses declare their facts as class attributes and implement ``_check``,
``nbytes``, ``_encode`` and ``_decode``; the base class does argument validation,
so every codec refuses bad input with the same clear errors.
"""

from __future__ import annotations

import abc
import json
import math
import operator
from typing import Any, Callable, ClassVar

import numpy as np

from ..errors import CodecError, CorruptDataError, ShapeError
from ._bits import as_f32_scale, ternary_to_codes
from ._scales import as_scale_array, to_codec_scales

Shape = tuple[int, int]


ZERO_PREFIX = 1 << 16  # bytes checked first by Codec.all_zero


class Codec(abc.ABC):
    """One ternary layout, with its parameters bound."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    container: ClassVar[str]  # "gguf" or "safetensors"
    spec: ClassVar[str]  # the formats/ document that defines the layout
    runtime: ClassVar[str]  # who reads this layout besides bitpack
    constraints: ClassVar[str]  # the shape rules, in one human line
    bits_text: ClassVar[str]  # bits per weight as a formula, for tables
    lossless_scale: ClassVar[str] = "yes"  # can any f32 scale be stored exactly?
    lossy: ClassVar[bool] = False  # True for bitstack: decode returns an approximation in float32
    param_names: ClassVar[tuple[str, ...]] = ()
    spare_code_bytes: ClassVar[int] = 0  # readable bytes _encode needs after the codes
    zero_byte: ClassVar[int | None] = None  # the byte every code byte holds when all t are 0, if one exists
    # The scale this layout stores (formats-2026.md §7.1; codecs/_scales.py): "tensor", "row"
    # or "group" of ``group_size`` weights along a row, in ``scale_dtype`` ("f32", "f16", "bf16").
    scale_granularity: ClassVar[str] = "tensor"
    group_size: ClassVar[int | None] = None
    scale_dtype: ClassVar[str] = "f32"
    # What a runtime's kernels do to the activations for weights of this layout, where it is not
    # the per-token int8 of the BitNet recipe: runtime ("llama.cpp", "bitnet.cpp") -> scheme,
    # "q8_K" (per 256 values, architectures.md §9.1) or "f32-scale" (127/m in float32).
    # The executor's numerics modes read it.
    activation_quant: ClassVar[dict[str, str]] = {}
    codes_restricted: ClassVar[bool] = False  # some ternary codes cannot be stored (q1_0 is binary)
    # The scale is a tensor of its own, stored in float32 at whatever granularity the weights
    # have (bitpack's own int8 / i2_packed): per tensor, per row (M, 1) or per group (M, K/g).
    any_scale: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = {k: v for k, v in params.items() if v is not None}

    @property
    def containers(self) -> tuple[str, ...]:
        """Every container a model in this layout can be written to, ``container`` (the
        default) first; a codec whose models also go elsewhere overrides it."""
        return (self.container,)

    # -- configuration (numcodecs style) ---------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Plain JSON-able dict that :func:`bitpack.codecs.get_codec` rebuilds the codec from."""
        return {"id": self.name, **self.params}

    def for_shape(self, shape: Shape) -> Codec:
        """This codec with every parameter resolved for ``shape`` (what a file records)."""
        self.check(shape)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.get_config(), sort_keys=True))

    # -- all-zero detection (source checks, spec/checkpoints.md §10) -------------------
    def code_nbytes(self, shape: Shape) -> int:
        """Bytes at the start of the encoded tensor that hold codes only (no scale, no padding)."""
        return self.nbytes(shape)

    def all_zero(self, buf: Any, shape: Shape) -> bool | None:
        """Whether every code is 0, read from the bytes without decoding; None when this
        layout has no single zero byte (the caller decodes). A real weight differs from the
        pattern within its first bytes, so the prefix is looked at first."""
        if self.zero_byte is None:
            return None
        data = as_bytes(buf)[: self.code_nbytes(shape)]
        lo, step = 0, ZERO_PREFIX  # then growing slices: no full-size temporary for a mapped tensor
        while lo < data.size:
            if (data[lo : lo + step] != self.zero_byte).any():
                return False
            lo, step = lo + step, min(step * 4, 1 << 24)
        return True

    # -- shape facts ---------------------------------------------------------------
    def check(self, shape: Shape) -> Shape:
        """Return (M, K) or raise ShapeError naming the rule ``shape`` breaks."""
        try:
            m, k = (operator.index(d) for d in shape)  # integers only: 32.5 or "32" are refused
        except (TypeError, ValueError):
            raise ShapeError(f"{self.name} encodes 2-D weights (M, K); got shape {shape!r}") from None
        if m <= 0 or k <= 0:
            raise ShapeError(f"{self.name} needs a non-empty (M, K) shape; got ({m}, {k})")
        self._check(m, k)
        return m, k

    def check_codes(self, codes: np.ndarray) -> None:  # noqa: B027 - most codecs hold any codes
        """Raise CodecError for ternary codes this layout cannot hold (``codes_restricted``
        codecs), naming where; a converter calls it for every tensor before writing."""

    def _check(self, m: int, k: int) -> None:  # noqa: B027 - most codecs accept any shape
        """Raise ShapeError if (m, k) cannot be encoded."""

    @abc.abstractmethod
    def nbytes(self, shape: Shape) -> int:
        """Exact size of ``encode``'s result for ``shape`` (GGUF: trailers included)."""

    def bits_per_weight(self, shape: Shape) -> float:
        m, k = self.check(shape)
        return 8.0 * self.nbytes((m, k)) / (m * k)

    # -- data ----------------------------------------------------------------------
    def encode(self, codes: np.ndarray, scale: Any) -> np.ndarray:
        """Encode the canonical tensor; returns exactly ``nbytes(codes.shape)`` bytes."""
        codes = np.asarray(codes)
        shape = self.check(codes.shape)
        codes = ternary_to_codes(codes, spare=self.spare_code_bytes)
        if np.size(scale) > 1 and self.any_scale:  # kept as given, in its own tensor: only validated
            as_scale_array(scale, shape, self.name)
            scale = np.float32(1)
        elif np.size(scale) > 1:  # per row or group: brought to this codec's own scales, exactly or refused
            scale = to_codec_scales(scale, codes, self.scale_granularity, self.group_size, self.scale_dtype,
                                    self.name)
        out = self._encode(codes, self._encode_scale(scale, shape), shape)
        assert out.nbytes == self.nbytes(shape), (self.name, out.nbytes, self.nbytes(shape))
        return out

    def decode(self, buf: Any, shape: Shape, scale: Any = None) -> tuple[np.ndarray, Any]:
        """Decode ``buf`` into (int8 codes of ``shape``, scale)."""
        shape = self.check(shape)
        data = as_bytes(buf)
        want = self.nbytes(shape)
        if data.size != want:
            raise CorruptDataError(
                f"{self.name} data for shape {shape} must be {want} bytes, got {data.size}"
            )
        return self._decode(data, shape, scale)

    def transcode(self, src: Codec, buf: Any, shape: Shape) -> np.ndarray:
        """``src``'s bytes of a tensor of ``shape`` in this layout: exactly
        ``self.encode(*src.decode(buf, shape))``, refusing what that refuses, but computed from
        the bytes where this pair of layouts has a shortcut (``_transcoder``)."""
        fast = self._transcoder(src)
        if fast is not None:
            shape = src.check(shape)
            self.check(shape)
            data = as_bytes(buf)
            out = fast(data, shape) if data.size == src.nbytes(shape) else None
            if out is not None:
                return out
        return self.encode(*src.decode(buf, shape))

    def transcodes_from(self, src: Codec) -> bool:
        """Whether ``transcode`` from ``src`` has a shortcut (cheaper than decoding)."""
        return self._transcoder(src) is not None

    def _transcoder(self, src: Codec) -> Callable[[np.ndarray, Shape], np.ndarray | None] | None:
        """A shortcut from ``src``'s layout to this one, if the pair has one: given flat bytes of
        a checked shape, it returns this layout's bytes, or None where the data needs the
        reference path (a corrupt value, scales that must be compared), which then refuses
        with its own message."""
        return None

    def row_bytes(self, k: int) -> int | None:
        """The bytes of one row of ``k`` weights when every row is a byte range of its own, one
        after the other (a tensor then converts a block of rows at a time); None for layouts
        with a per-tensor trailer or tiles across rows."""
        return None

    def body_row_bytes(self, k: int) -> int | None:
        """As ``row_bytes``, for a layout whose rows may be followed by a per-tensor trailer
        that depends only on the scale (I2_S): encoding a block of rows then gives those rows'
        bytes, then the trailer, so a tensor can still be written a block of rows at a time."""
        return self.row_bytes(k)

    def _encode_scale(self, scale: Any, shape: Shape) -> Any:
        """Validate the scale for this codec; the default is one finite f32 value."""
        return as_f32_scale(scale, self.name)

    @abc.abstractmethod
    def _encode(self, codes: np.ndarray, scale: Any, shape: Shape) -> np.ndarray:
        """``codes`` are validated uint8 codes c = t + 1 of ``shape``."""

    @abc.abstractmethod
    def _decode(self, data: np.ndarray, shape: Shape, scale: Any) -> tuple[np.ndarray, Any]:
        """``data`` is a flat uint8 array of exactly ``nbytes(shape)`` bytes."""


class SafetensorsCodec(Codec):
    """A layout stored as one safetensors weight tensor; the scale is a tensor of its own."""

    container = "safetensors"
    stored_dtype: ClassVar[np.dtype]

    @abc.abstractmethod
    def stored_shape(self, shape: Shape) -> tuple[int, ...]:
        """Shape of the stored weight tensor for logical ``shape``."""

    def nbytes(self, shape: Shape) -> int:
        shape = self.check(shape)
        # math.prod, not np.prod: NumPy's int64 wraps for a hostile shape and would "need" 0 bytes
        return math.prod(self.stored_shape(shape)) * np.dtype(self.stored_dtype).itemsize

    def decode(self, buf: Any, shape: Shape, scale: Any = None) -> tuple[np.ndarray, Any]:
        codes, _ = super().decode(buf, shape, None)
        return codes, (None if scale is None else as_f32_scale(scale, self.name))


class GGUFCodec(Codec):
    """A layout stored as one GGUF tensor whose bytes a runtime reads as they are."""

    container = "gguf"
    ggml_name: ClassVar[str]  # the type's name in GGUF tools: the codec's name in capitals unless declared
    # The GGML type id of this layout in each producer dialect that has it (spec/gguf.md §3,
    # formats-2026.md §8.1), the dialect bitpack writes by default first, e.g.
    # {"mainline": 42, "prism": 42}; and the general.file_type (llama_ftype) a whole-model
    # file of this codec declares, per dialect (gguf.md §3.1, formats-2026.md §8.2).
    type_ids: ClassVar[dict[str, int]] = {}
    file_types: ClassVar[dict[str, int]] = {}
    separate_scale: ClassVar[bool] = False  # can keep an exact f32 scale in a '<name>.scale' tensor
    tiled: ClassVar[bool] = False  # bound per shape to kernel tiles (codec.tiles(shape))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "ggml_name" not in cls.__dict__:
            cls.ggml_name = cls.name.upper()

    @classmethod
    def type_nbytes(cls, shape: tuple[int, ...]) -> int | None:
        """What the producer's ggml_nbytes gives for a tensor of this type with NumPy ``shape``
        (every leading dimension counts as rows), or None for a shape the type cannot hold.
        Dialect detection compares it with the bytes a tensor occupies (gguf.md §3.2)."""
        try:
            return cls().nbytes((math.prod(shape[:-1]), shape[-1]))
        except ShapeError:
            return None


def as_bytes(buf: Any) -> np.ndarray:
    """View bytes, bytearray, memoryview or any contiguous array as flat uint8."""
    if isinstance(buf, np.ndarray):
        if not buf.flags.c_contiguous:
            buf = np.ascontiguousarray(buf)
        return buf.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(buf, dtype=np.uint8)
    except TypeError:
        raise CodecError(f"expected bytes or a NumPy array, got {type(buf).__name__}") from None


def pad(x: int, a: int) -> int:
    """x rounded up to a multiple of a."""
    return -(-x // a) * a


def require(ok: bool, codec: str, shape: Shape, rule: str) -> None:
    """Raise the ShapeError that names ``rule`` unless ``ok``."""
    if not ok:
        raise ShapeError(f"{codec} cannot encode shape {tuple(shape)}: {rule}")


__all__ = ["Codec", "GGUFCodec", "SafetensorsCodec", "Shape", "as_bytes", "pad", "require"]
