"""GGUF constants as data: KV value types and the GGML type table of each dialect.

Type ids mean different things to different producers (spec/gguf.md §3): 39 is TL2 in
the bitnet.cpp 2024-25 fork and MXFP4 elsewhere, 42 is TL2 in the 2026 fork and Q2_0 in
mainline. Everything that depends on the id therefore goes through :data:`TYPES`, one
table per dialect, and nothing else in bitpack hard-codes a type id.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from ..codecs.tl2 import payload_limit

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


def pad(x: int, align: int) -> int:
    """x rounded up to a multiple of align."""
    return -(-x // align) * align


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
