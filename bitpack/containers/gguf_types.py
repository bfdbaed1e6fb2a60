"""GGUF's types: KV value types (read and written here) and the GGML type table of each dialect.

Type ids mean different things to different producers (spec/gguf.md §3): 39 is TL2 in
the bitnet.cpp 2024-25 fork and MXFP4 elsewhere, 42 is TL2 in the 2026 fork and Q2_0 in
mainline. Everything that depends on the id therefore goes through :data:`TYPES`, one
table per dialect, and nothing else in bitpack hard-codes a type id.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ..codecs.base import pad
from ..codecs.tl2 import payload_limit
from ..errors import ContainerError

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32  # gguf.md §1.4; the I2_S/TL trailers are sized for it
MAX_NAME_BYTES = 63  # GGML_MAX_NAME = 64 including the NUL (gguf.md §1.3)
MAX_DIMS = 4  # GGML_MAX_DIMS

MAINLINE = "mainline"
BITNET_CPP_2024 = "bitnet-cpp-2024"
BITNET_CPP_2026 = "bitnet-cpp-2026"
DIALECTS = (MAINLINE, BITNET_CPP_2024, BITNET_CPP_2026)
FORK_ARCHITECTURES = ("bitnet-b1.58", "bitnet-25")  # gguf.md §3.2 rule 2


class ValueType(IntEnum):
    """KV value types (gguf.md §1.2); the same ids as gguf.GGUFValueType."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# Fixed-size value types: little-endian NumPy dtype (arrays) and struct format (scalars).
# BOOL is stored as one byte 0/1; arrays of it are read as uint8 and checked.
SCALAR_DTYPES: dict[int, str] = {
    ValueType.UINT8: "<u1",
    ValueType.INT8: "<i1",
    ValueType.UINT16: "<u2",
    ValueType.INT16: "<i2",
    ValueType.UINT32: "<u4",
    ValueType.INT32: "<i4",
    ValueType.FLOAT32: "<f4",
    ValueType.BOOL: "<u1",
    ValueType.UINT64: "<u8",
    ValueType.INT64: "<i8",
    ValueType.FLOAT64: "<f8",
}
STRUCT_FORMATS: dict[int, str] = {
    ValueType.UINT8: "<B",
    ValueType.INT8: "<b",
    ValueType.UINT16: "<H",
    ValueType.INT16: "<h",
    ValueType.UINT32: "<I",
    ValueType.INT32: "<i",
    ValueType.FLOAT32: "<f",
    ValueType.BOOL: "<B",
    ValueType.UINT64: "<Q",
    ValueType.INT64: "<q",
    ValueType.FLOAT64: "<d",
}
# NumPy dtype kind/size -> value type, so a NumPy array carries its element type.
DTYPE_TO_VALUE_TYPE: dict[str, int] = {
    "u1": ValueType.UINT8,
    "i1": ValueType.INT8,
    "u2": ValueType.UINT16,
    "i2": ValueType.INT16,
    "u4": ValueType.UINT32,
    "i4": ValueType.INT32,
    "f4": ValueType.FLOAT32,
    "b1": ValueType.BOOL,
    "u8": ValueType.UINT64,
    "i8": ValueType.INT64,
    "f8": ValueType.FLOAT64,
}


U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
INT64_MAX = 2**63 - 1  # ggml stores ne as int64_t
MAX_NESTING = 8  # arrays of arrays: mainline refuses them; allow a few levels, never a stack overflow




# -- GGML tensor types -----------------------------------------------------------------

NBytes = Callable[[tuple[int, ...]], "int | None"]


@dataclass(frozen=True)
class GGMLType:
    """One type id as a dialect reads it: display name, bitpack codec, exact byte size.

    ``nbytes(numpy_shape)`` is the size the producer's ``ggml_nbytes`` computes (gguf.md
    §1.6), or None when the shape is impossible for the type (a row length that is not a
    multiple of the block). ``nbytes`` is None for types whose size bitpack does not know.
    """

    id: int
    name: str
    codec: str | None
    nbytes: NBytes | None


def _blocks(block: int, size: int) -> NBytes:
    """Block types: ``size`` bytes per ``block`` elements along the row (ne0)."""

    def nbytes(shape: tuple[int, ...]) -> int | None:
        if shape[-1] % block:
            return None
        return math.prod(shape) // block * size

    return nbytes


def _quarter_plus_trailer(shape: tuple[int, ...]) -> int:
    # I2_S and TL1: 2 bits per weight plus a 32-byte trailer holding the f32 scale.
    # The fork's patched ggml_nbytes computes nelements / 4 + 32 (gguf.md §1.6, §2).
    return math.prod(shape) // 4 + 32


def _tl2(shape: tuple[int, ...]) -> int | None:
    # pad(F, 32) + 32 with F from the converter's integer arithmetic (gguf.md §1.6).
    k = shape[-1]
    m = math.prod(shape[:-1])
    if k < 256:  # TL2 requires K >= 256 (codecs.md); below it F would be negative
        return None
    return pad(payload_limit(m, k), 32) + 32


# Standard ggml types every dialect shares (id, name, block size, bytes per block),
# copied from ggml's type traits / gguf.GGML_QUANT_SIZES. Non-ternary types carry no codec.
_STANDARD = [
    (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22), (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84), (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210), (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74), (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50), (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82), (23, "IQ4_XS", 256, 136), (24, "I8", 1, 1), (25, "I16", 1, 2),
    (26, "I32", 1, 4), (27, "I64", 1, 8), (28, "F64", 1, 8), (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54), (35, "TQ2_0", 256, 66),
]  # fmt: skip
_CODECS = {34: "tq1_0", 35: "tq2_0"}


def _table(extra: list[GGMLType]) -> dict[int, GGMLType]:
    table = {i: GGMLType(i, name, _CODECS.get(i), _blocks(blk, size)) for i, name, blk, size in _STANDARD}
    table.update({t.id: t for t in extra})
    return table


_I2_S = GGMLType(36, "I2_S", "i2_s", _quarter_plus_trailer)
_TL1 = GGMLType(38, "TL1", "tl1", _quarter_plus_trailer)
_MXFP4 = GGMLType(39, "MXFP4", None, _blocks(32, 17))
_NVFP4 = GGMLType(40, "NVFP4", None, _blocks(64, 36))
_Q1_0 = GGMLType(41, "Q1_0", None, _blocks(128, 18))

# gguf.md §3. Q2_0's block layout is not in the spec (nor in PyPI gguf 0.19.0): its size
# is unknown, so such a tensor can be listed but not read.
TYPES: dict[str, dict[int, GGMLType]] = {
    MAINLINE: _table([_MXFP4, _NVFP4, _Q1_0, GGMLType(42, "Q2_0", None, None)]),
    BITNET_CPP_2024: _table([_I2_S, _TL1, GGMLType(39, "TL2", "tl2", _tl2)]),
    BITNET_CPP_2026: _table([_I2_S, _TL1, _MXFP4, _NVFP4, _Q1_0, GGMLType(42, "TL2", "tl2", _tl2)]),
}


def ggml_type(dialect: str, type_id: int) -> GGMLType | None:
    """The type ``type_id`` means in ``dialect``, or None if that dialect has no such id."""
    return TYPES[dialect].get(type_id)


def tl2_nbytes(shape: tuple[int, ...]) -> int | None:
    """TL2's size for a NumPy shape (used by dialect detection for ids 39 and 42)."""
    return _tl2(shape)


def mxfp4_nbytes(shape: tuple[int, ...]) -> int | None:
    """MXFP4's size, 17·n/32 (dialect detection for id 39)."""
    return _MXFP4.nbytes(shape)  # type: ignore[misc]


# -- KV values: reading and writing (gguf.md §1.2) ------------------------------------------


class Cursor:
    """Bounds-checked little-endian reads from the mapped file; every error names the offset."""

    def __init__(self, buf: Any, size: int, label: str) -> None:
        self.buf, self.size, self.label, self.pos = buf, size, label, 0

    def fail(self, msg: str) -> ContainerError:
        return ContainerError(f"{self.label}: {msg}")

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise self.fail(
                f"file ends at byte {self.size} inside {what} at offset {self.pos} "
                f"(needs {n} bytes): the file is truncated"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str) -> str:
        at = self.pos
        n = self.u64(f"the length of {what}")
        if n > self.size - self.pos:
            raise self.fail(
                f"{what} at offset {at} declares {n} bytes, but only {self.size - self.pos} "
                "remain in the file (corrupt length or truncated file)"
            )
        # surrogateescape keeps invalid UTF-8 byte-exact for a faithful rewrite
        s = self.buf[self.pos : self.pos + n].decode("utf-8", "surrogateescape")
        self.pos += n
        return s

    def scalar(self, vtype: int, what: str) -> Any:
        fmt = STRUCT_FORMATS[vtype]
        size = struct.calcsize(fmt)
        self.need(size, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        if vtype == ValueType.BOOL:
            if v > 1:
                raise self.fail(f"{what} at offset {self.pos} is a BOOL with byte value {v} (must be 0 or 1)")
            v = bool(v)
        self.pos += size
        return v

    def value(self, vtype: int, what: str, depth: int = 0) -> tuple[Any, int | None]:
        """Read one KV value; returns (python value, element type for arrays else None)."""
        if vtype in STRUCT_FORMATS:
            return self.scalar(vtype, what), None
        if vtype == ValueType.STRING:
            return self.string(what), None
        if vtype != ValueType.ARRAY:
            raise self.fail(f"{what} has unknown value type {vtype} at offset {self.pos - 4}")
        at = self.pos
        etype = self.u32(f"the element type of {what}")
        count = self.u64(f"the element count of {what}")
        return self.array(etype, count, at, what, depth), etype

    def array(self, etype: int, count: int, at: int, what: str, depth: int) -> Any:
        remaining = self.size - self.pos
        # The smallest encoding of one element: its fixed size, 8 for a string's length,
        # 12 for a nested array's type and count. A count the file cannot hold is refused
        # before anything is allocated.
        min_size = {ValueType.STRING: 8, ValueType.ARRAY: 12}.get(etype)
        if min_size is None:
            if etype not in SCALAR_DTYPES:
                raise self.fail(f"{what} at offset {at} is an array of unknown value type {etype}")
            min_size = np.dtype(SCALAR_DTYPES[etype]).itemsize
        if count * min_size > remaining:
            raise self.fail(
                f"{what} at offset {at} declares {count} elements, more than the {remaining} bytes "
                "left in the file can hold (corrupt count or truncated file)"
            )
        if etype == ValueType.STRING:
            return self.string_array(count, what)
        if etype == ValueType.ARRAY:
            if depth >= MAX_NESTING:
                raise self.fail(f"{what} at offset {at} nests arrays more than {MAX_NESTING} levels deep")
            out = []
            for i in range(count):
                inner_at = self.pos
                inner = self.u32(f"the element type of {what}[{i}]")
                inner_count = self.u64(f"the element count of {what}[{i}]")
                out.append(self.array(inner, inner_count, inner_at, f"{what}[{i}]", depth + 1))
            return out
        dtype = np.dtype(SCALAR_DTYPES[etype])
        # astype copies (the KV values must not pin the mapping) into native byte order
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).astype(dtype.newbyteorder("="))
        self.pos += arr.nbytes
        if etype == ValueType.BOOL:
            if count and arr.max() > 1:
                raise self.fail(f"{what} at offset {at} is a BOOL array with a byte other than 0 or 1")
            arr = arr.view(np.bool_)
        return arr

    def string_array(self, count: int, what: str) -> list[str]:
        # Tokenizer arrays hold 128K-280K strings: one tight loop, no per-element checks
        # beyond what the slice needs. A length running past the end is caught after the
        # loop (slices clamp) or by unpack_from raising struct.error.
        buf, pos, unpack = self.buf, self.pos, U64.unpack_from
        out: list[str] = [""] * count
        try:
            for i in range(count):
                (n,) = unpack(buf, pos)
                pos += 8
                out[i] = buf[pos : pos + n].decode("utf-8", "surrogateescape")
                pos += n
        except (struct.error, OverflowError):  # a huge length moved pos past the end
            pos = self.size + 1
        if pos > self.size:
            raise self.fail(
                f"{what} (array of {count} strings starting at offset {self.pos}) runs past "
                f"the end of the file ({self.size} bytes): corrupt length or truncated file"
            )
        self.pos = pos
        return out


def element_type(value: Any, what: str) -> int:
    """The GGUF element type a NumPy array or list carries (for arrays given without one)."""
    if isinstance(value, np.ndarray):
        vtype = DTYPE_TO_VALUE_TYPE.get(f"{value.dtype.kind}{value.dtype.itemsize}")
        if vtype is None:
            raise ContainerError(f"{what}: NumPy dtype {value.dtype} has no GGUF value type")
        return vtype
    items = list(value)
    if all(isinstance(v, (str, bytes)) for v in items):
        return ValueType.STRING  # includes the empty list: the ambiguity is documented
    if all(isinstance(v, (list, tuple, np.ndarray)) for v in items):
        return ValueType.ARRAY
    raise ContainerError(f"{what}: cannot infer the element type of a list of {type(items[0]).__name__}; "
                         "pass element_type or a NumPy array")


def encode_string(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise ContainerError(f"{what}: expected a string, got {type(value).__name__}")
    return U64.pack(len(data)) + data


def encode_scalar(vtype: int, value: Any, what: str) -> bytes:
    if vtype == ValueType.BOOL:
        if value not in (0, 1) or isinstance(value, float):
            raise ContainerError(f"{what}: BOOL value must be True/False, got {value!r}")
        return bytes([int(value)])
    try:
        if vtype in (ValueType.FLOAT32, ValueType.FLOAT64):
            return struct.pack(STRUCT_FORMATS[vtype], float(value))
        if isinstance(value, (float, np.floating)) or not isinstance(value, (int, np.integer)):
            raise TypeError
        return struct.pack(STRUCT_FORMATS[vtype], int(value))
    except (struct.error, OverflowError, TypeError, ValueError):
        raise ContainerError(f"{what}: {value!r} is not a valid {ValueType(vtype).name}") from None


def encode_array(etype: int, value: Any, what: str, depth: int = 0) -> bytes:
    if depth > MAX_NESTING:
        raise ContainerError(f"{what}: arrays nested more than {MAX_NESTING} levels deep")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ContainerError(f"{what}: expected an array (list or NumPy array), got {type(value).__name__}")
    head = U32.pack(etype) + U64.pack(len(value))
    if etype == ValueType.STRING:
        return head + b"".join([encode_string(v, f"{what}[{i}]") for i, v in enumerate(value)])
    if etype == ValueType.ARRAY:
        parts = [head]
        for i, inner in enumerate(value):
            sub = f"{what}[{i}]"
            parts.append(encode_array(element_type(inner, sub), inner, sub, depth + 1))
        return b"".join(parts)
    if etype not in SCALAR_DTYPES:
        raise ContainerError(f"{what}: unknown element type {etype}")
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ContainerError(f"{what}: arrays must be one-dimensional, got shape {arr.shape}")
    dtype = np.dtype(SCALAR_DTYPES[etype])
    if len(arr) and arr.dtype.kind not in "biuf":
        raise ContainerError(f"{what}: array of {arr.dtype} cannot be stored as {ValueType(etype).name}")
    if etype == ValueType.BOOL:
        if len(arr) and not np.isin(arr, (0, 1)).all():
            raise ContainerError(f"{what}: BOOL array holds values other than 0/1")
    elif dtype.kind in "iu" and len(arr):
        info = np.iinfo(dtype)
        if arr.dtype.kind == "f" or arr.min() < info.min or arr.max() > info.max:
            raise ContainerError(f"{what}: values do not fit {ValueType(etype).name} "
                                 f"(range {arr.min()}..{arr.max()}, dtype {arr.dtype})")
    elif dtype.kind == "f" and len(arr):
        with np.errstate(over="ignore"):
            cast = arr.astype(dtype)
        if (np.isinf(cast) & ~np.isinf(arr)).any():
            raise ContainerError(f"{what}: values overflow {ValueType(etype).name}")
    return head + arr.astype(dtype).tobytes()


def encode_value(vtype: int, value: Any, etype: int | None, what: str) -> bytes:
    """The bytes of one KV value of type ``vtype`` (arrays: element type ``etype`` or inferred)."""
    if vtype in STRUCT_FORMATS:
        return encode_scalar(vtype, value, what)
    if vtype == ValueType.STRING:
        return encode_string(value, what)
    if vtype == ValueType.ARRAY:
        return encode_array(int(etype) if etype is not None else element_type(value, what), value, what)
    raise ContainerError(f"{what}: unknown value type {vtype!r}")
