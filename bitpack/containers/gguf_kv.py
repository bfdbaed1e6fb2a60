"""GGUF key/value encoding (gguf.md §1.2): bounds-checked reading and exact writing.

The value types are gguf-py's own enum (``gguf.GGUFValueType``); :data:`FIXED` is the one table
of what each fixed-size type is in bytes: its NumPy dtype, its struct format and the short name
bitpack's writers use ("u32", "[string]" for an array of strings).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGUFValueType as ValueType

from ..errors import ContainerError


@dataclass(frozen=True)
class Fixed:
    """A fixed-size value type: little-endian NumPy dtype, struct format, short name."""

    dtype: str
    fmt: str
    short: str


# BOOL is stored as one byte 0/1; arrays of it are read as uint8 and checked.
FIXED: dict[int, Fixed] = {
    ValueType.UINT8: Fixed("<u1", "<B", "u8"),
    ValueType.INT8: Fixed("<i1", "<b", "i8"),
    ValueType.UINT16: Fixed("<u2", "<H", "u16"),
    ValueType.INT16: Fixed("<i2", "<h", "i16"),
    ValueType.UINT32: Fixed("<u4", "<I", "u32"),
    ValueType.INT32: Fixed("<i4", "<i", "i32"),
    ValueType.FLOAT32: Fixed("<f4", "<f", "f32"),
    ValueType.BOOL: Fixed("<u1", "<B", "bool"),
    ValueType.UINT64: Fixed("<u8", "<Q", "u64"),
    ValueType.INT64: Fixed("<i8", "<q", "i64"),
    ValueType.FLOAT64: Fixed("<f8", "<d", "f64"),
}
SCALAR_DTYPES: dict[int, str] = {v: f.dtype for v, f in FIXED.items()}
STRUCT_FORMATS: dict[int, str] = {v: f.fmt for v, f in FIXED.items()}
# NumPy dtype kind/size -> value type, so a NumPy array carries its element type (bool: b1).
DTYPE_TO_VALUE_TYPE: dict[str, int] = {
    np.dtype(f.dtype).kind + str(np.dtype(f.dtype).itemsize): v for v, f in FIXED.items() if v != ValueType.BOOL
} | {"b1": ValueType.BOOL}
# Short names for writers: "u32", "string", "[string]" (an array of strings), ...
VALUE_TYPES: dict[str, int] = {f.short: v for v, f in FIXED.items()} | {"string": ValueType.STRING}

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
MAX_NESTING = 8  # arrays of arrays: mainline refuses them; allow a few levels, never a stack overflow


def value_type(spec: str | tuple[int, int | None]) -> tuple[int, int | None]:
    """(value type, element type) for a short type name, or a GGUFFile.kv_types entry as is."""
    if isinstance(spec, tuple):
        return spec
    if spec.startswith("["):
        return ValueType.ARRAY, VALUE_TYPES[spec[1:-1]]
    return VALUE_TYPES[spec], None


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
