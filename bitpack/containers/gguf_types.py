"""GGML tensor types as each producer dialect reads them, built from two sources of truth.

Type ids mean different things to different producers (spec/gguf.md §3): 39 is TL2 in the
bitnet.cpp 2024-25 fork and MXFP4 elsewhere, 42 is TL2 in the 2026 fork and Q2_0 in mainline.
So a type id is only ever looked up through :func:`types` of one dialect, and no module names
an id:

* ids 0-35, which every dialect shares, come from gguf-py's own tables
  (``gguf.GGMLQuantizationType``, ``gguf.GGML_QUANT_SIZES``);
* every ternary type comes from the codec that implements it: a :class:`GGUFCodec` declares
  its ``type_ids`` per dialect, its ``ggml_name`` and its ``type_nbytes`` (built-in codecs and
  those of outside packages registered under the ``bitpack.codecs`` entry-point group alike);
* the few other types above 35 a dialect has (MXFP4, NVFP4) are listed in :data:`DIALECTS`
  by name, with gguf-py's sizes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..codecs import codec_class, list_codecs
from ..codecs.base import GGUFCodec

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32  # gguf.md §1.4; the I2_S/TL trailers are sized for it
MAX_NAME_BYTES = 63  # GGML_MAX_NAME = 64 including the NUL (gguf.md §1.3)
MAX_DIMS = 4  # GGML_MAX_DIMS
INT64_MAX = 2**63 - 1  # ggml stores ne as int64_t
SHARED_IDS = range(34)  # ids 0-33 mean the same in every dialect; TQ1_0/TQ2_0 (34, 35) come with their codecs

MAINLINE = "mainline"
BITNET_CPP_2024 = "bitnet-cpp-2024"
BITNET_CPP_2026 = "bitnet-cpp-2026"
PRISM = "prism"
PRISM_LEGACY = "prism-legacy"
IK_LLAMA = "ik-llama"


@dataclass(frozen=True)
class Dialect:
    """One producer's reading of type ids (formats-2026.md §8.1): the non-ternary ids above 35
    it has (by gguf-py name; ternary ids come from the codecs), whether it is a bitnet.cpp
    fork (whose files carry fork evidence, gguf.md §3.2), whether bitpack writes it, and the
    runtimes (and builds) that read its files, for ``inspect``."""

    name: str
    extra_types: tuple[str, ...] = ()
    fork: bool = False
    writable: bool = True
    readers: str = ""


DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    Dialect(MAINLINE, ("MXFP4", "NVFP4"),
            readers="llama.cpp and everything built on it (llama-cpp-python, LM Studio, Ollama), the PrismML fork"),
    Dialect(BITNET_CPP_2024, fork=True, readers="bitnet.cpp releases of 2024-25 (microsoft/BitNet before the 2026 rebase)"),
    Dialect(BITNET_CPP_2026, ("MXFP4", "NVFP4"), fork=True, readers="bitnet.cpp since its 2026 rebase"),
    Dialect(PRISM, ("MXFP4", "NVFP4"), readers="the PrismML llama.cpp fork, prism-v7 and later"),
    # Prism releases up to prism-v5 read id 42 as group-128 Q2_0; bitpack reads such files and
    # writes their tensors as PQ2_0 (142) instead (formats-2026.md §9.4 rule 6)
    Dialect(PRISM_LEGACY, ("MXFP4", "NVFP4"), writable=False,
            readers="PrismML fork releases up to prism-v5 only (mainline refuses id 42 at group 128)"),
    Dialect(IK_LLAMA, ("MXFP4",), readers="ik_llama.cpp"),
)}
FORK_ARCHITECTURES = ("bitnet-b1.58", "bitnet-25")  # gguf.md §3.2 rule 2
ARCHITECTURE_DIALECTS = {"bitnet-25": (BITNET_CPP_2024,)}  # rule 6: removed in the 2026 fork

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


def _gguf_type(qtype: GGMLQuantizationType) -> GGMLType:
    return GGMLType(int(qtype), qtype.name, None, _blocks(*GGML_QUANT_SIZES[qtype]))


def gguf_codecs() -> list[type[GGUFCodec]]:
    """Every registered codec stored as a GGUF tensor type (built-in and entry points)."""
    classes = [codec_class(name) for name in list_codecs()]
    return [c for c in classes if issubclass(c, GGUFCodec)]


@functools.cache
def types(dialect: str) -> dict[int, GGMLType]:
    """Type id -> what it means in ``dialect`` (unknown ids are absent)."""
    table = {int(q): _gguf_type(q) for q in GGMLQuantizationType if int(q) in SHARED_IDS}
    table.update({int(q): _gguf_type(q) for q in GGMLQuantizationType if q.name in DIALECTS[dialect].extra_types})
    for cls in gguf_codecs():
        if dialect in cls.type_ids:
            type_id = cls.type_ids[dialect]
            table[type_id] = GGMLType(type_id, cls.ggml_name, cls.name, cls.type_nbytes)
    return table


def ggml_type(dialect: str, type_id: int) -> GGMLType | None:
    """The type ``type_id`` means in ``dialect``, or None if that dialect has no such id."""
    return types(dialect).get(type_id)


def codec_dialects(codec: str) -> tuple[str, ...]:
    """The dialects bitpack writes ``codec`` in, preferred first (the codec's own order)."""
    return tuple(d for d in codec_class(codec).type_ids if d in DIALECTS and DIALECTS[d].writable)


def file_type(dialect: str, codec: str) -> int:
    """``general.file_type`` of a model stored in ``codec`` (gguf.md §3.1: a label only):
    the dialect's own value, else mainline's, else 0 (ALL_F32)."""
    declared = codec_class(codec).file_types
    return declared.get(dialect, declared.get(MAINLINE, 0))
