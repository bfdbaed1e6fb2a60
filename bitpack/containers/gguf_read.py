"""GGUF v3 reader (spec/gguf.md §1, §3.2, §8).

The reader memory-maps the file and checks every structural rule of gguf.md §1.7 before
anything is returned, so a crafted or truncated file raises one clear
:class:`~bitpack.errors.ContainerError` naming the byte offset or tensor (pitfalls.md P20),
never another exception and never a partial result. It works out the producer dialect
(§3.2) before it maps a type id to a size or codec, because ids 39 and 42 mean different
things to different producers.

PyPI ``gguf`` cannot do this job: its reader refuses ids 36/38/42 (§10). The writer is
:mod:`.gguf_write`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..codecs.base import pad
from ..errors import ContainerError, DialectError
from .gguf_dialect import HINT as _DIALECT_HINT
from .gguf_dialect import TensorSpan, detect
from .gguf_kv import Cursor, ValueType
from .gguf_types import (
    BITNET_CPP_2024,
    DEFAULT_ALIGNMENT,
    DIALECTS,
    GGUF_MAGIC,
    GGUF_VERSION,
    INT64_MAX,
    MAX_DIMS,
    MAX_NAME_BYTES,
    GGMLType,
    types,
)

__all__ = ["GGUFFile", "GGUFTensor"]


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor-info record plus where its bytes are.

    ``ne`` is in ggml order (ne0, the contiguous row length, first). ``offset`` is relative
    to the data section, ``data_offset`` absolute. ``extent`` is the room up to the next
    tensor's data (or the end of the file for the last one), padding included (§3.2 rule 5).
    ``nbytes`` is the exact size per the file's dialect, or None when the type is unknown.
    """

    name: str
    ne: tuple[int, ...]
    type_id: int
    offset: int
    data_offset: int
    extent: int
    nbytes: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """NumPy (C-order) shape: ne reversed (gguf.md §1.5)."""
        return tuple(reversed(self.ne))



class GGUFFile:
    """A GGUF v3 file, parsed and checked on open; tensor data stays memory-mapped.

    ``dialect`` forces the producer dialect (§3.2) instead of detecting it; use it when
    detection reports ambiguous evidence.
    """

    def __init__(self, path: str | os.PathLike[str], dialect: str | None = None) -> None:
        self.path = Path(path)
        self._label = os.fspath(path)
        if dialect is not None and dialect not in DIALECTS:
            raise DialectError(f"{self._label}: unknown dialect {dialect!r}; {_DIALECT_HINT}")
        self.warnings: list[str] = []
        self.kv: dict[str, Any] = {}
        self.kv_types: dict[str, tuple[int, int | None]] = {}
        self.tensors: list[GGUFTensor] = []
        self._by_name: dict[str, GGUFTensor] = {}
        self._mm: mmap.mmap | None = None
        try:
            with open(self.path, "rb") as f:
                self.size = os.fstat(f.fileno()).st_size
                head = f.read(24)
                self.version = self._check_preamble(head)
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise ContainerError(f"{self._label}: cannot read the file: {e.strerror or e}") from None
        try:
            self._parse(dialect)
        except BaseException:
            self.close()
            raise

    # -- parsing -------------------------------------------------------------------
    def _check_preamble(self, head: bytes) -> int:
        """Magic and version from the first bytes, with a specific message per failure (§1)."""
        cur = Cursor(head, len(head), self._label)
        if head[:4] != GGUF_MAGIC:
            if len(head) < 4 and GGUF_MAGIC.startswith(head):
                cur.need(4, "the magic bytes")
            raise cur.fail(
                f"not a GGUF file: the magic at offset 0 is {head[:4].hex(' ')} ({head[:4]!r}), "
                f"expected 47 47 55 46 ('GGUF')"
            )
        cur.pos = 4
        version = cur.u32("the version field")
        if version != GGUF_VERSION:
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if version & 0xFFFF == 0 and 1 <= swapped <= GGUF_VERSION:
                raise cur.fail(f"big-endian GGUF file (version {swapped} stored big-endian at offset 4); "
                               "bitpack reads little-endian files only")
            if version in (1, 2):
                raise cur.fail(f"GGUF version {version} is not supported (bitpack reads version 3); "
                               "re-convert the model with a current llama.cpp")
            raise cur.fail(f"unsupported GGUF version {version} at offset 4 (bitpack reads version 3)")
        cur.need(16, "the tensor and key/value counts")
        return version

    def _parse(self, dialect: str | None) -> None:
        cur = Cursor(self._mm, self.size, self._label)
        cur.pos = 8
        n_tensors = cur.u64("the tensor count")
        n_kv = cur.u64("the key/value count")
        # Smallest possible records: KV = key length 8 + type 4 + 1 byte; tensor info =
        # name length 8 + n_dims 4 + one ne 8 + type 4 + offset 8. Refuse impossible counts
        # before looping over them.
        if n_kv * 13 + n_tensors * 32 > self.size - 24:
            raise cur.fail(f"the header declares {n_tensors} tensors and {n_kv} key/value pairs, "
                           f"more than the file's {self.size} bytes can hold (corrupt or truncated)")
        self._parse_kv(cur, n_kv)
        self.alignment = self._alignment(cur)
        seen: set[str] = set()
        infos = [self._parse_tensor_info(cur, i, seen) for i in range(n_tensors)]
        self.data_start = pad(cur.pos, self.alignment)
        self._place_tensors(cur, infos)
        self.dialect = dialect or self._detect_dialect()
        self._check_tensor_data(cur)

    def _parse_kv(self, cur: Cursor, n_kv: int) -> None:
        for i in range(n_kv):
            at = cur.pos
            key = cur.string(f"the key of key/value pair {i}")
            if key in self.kv:
                raise cur.fail(f"duplicate key '{key}' at offset {at} (keys must be unique, gguf.md §1.2)")
            vtype = cur.u32(f"the value type of '{key}'")
            self.kv[key], etype = cur.value(vtype, f"the value of '{key}'")
            self.kv_types[key] = (vtype, etype)

    def _alignment(self, cur: Cursor) -> int:
        if "general.alignment" not in self.kv:
            return DEFAULT_ALIGNMENT
        value = self.kv["general.alignment"]
        if self.kv_types["general.alignment"] != (ValueType.UINT32, None):
            vtype = self.kv_types["general.alignment"][0]
            raise cur.fail(f"general.alignment must be a UINT32, got {ValueType(vtype).name}")
        if value < 1 or value & (value - 1):
            raise cur.fail(f"general.alignment is {value}, not a power of two")
        return value

    def _parse_tensor_info(self, cur: Cursor, i: int, seen: set[str]) -> tuple[str, tuple[int, ...], int, int, int]:
        at = cur.pos
        name = cur.string(f"the name of tensor {i}")
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            shown = name if len(name) <= 72 else name[:72] + "..."
            raise cur.fail(f"tensor {i} name '{shown}' at offset {at} is {size} bytes; "
                           f"ggml allows at most {MAX_NAME_BYTES} (GGML_MAX_NAME)")
        if name in seen:
            raise cur.fail(f"duplicate tensor name '{name}' at offset {at}")
        seen.add(name)
        n_dims = cur.u32(f"n_dims of tensor '{name}'")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor '{name}' at offset {at} has n_dims {n_dims}; GGUF allows 1 to {MAX_DIMS}")
        ne = tuple(cur.u64(f"ne[{d}] of tensor '{name}'") for d in range(n_dims))
        if min(ne) < 1:
            raise cur.fail(f"tensor '{name}' at offset {at} has ne {list(ne)}; every dimension must be >= 1")
        if max(ne) > INT64_MAX or math.prod(ne) > INT64_MAX:
            raise cur.fail(f"tensor '{name}' at offset {at} has ne {list(ne)}, whose element count overflows 64 bits")
        type_id = cur.u32(f"the type of tensor '{name}'")
        offset = cur.u64(f"the data offset of tensor '{name}'")
        return name, ne, type_id, offset, at

    def _place_tensors(self, cur: Cursor, infos: list[tuple[str, tuple[int, ...], int, int, int]]) -> None:
        """Absolute offsets and extents (§3.2 rule 5): up to the next higher offset, or the file end."""
        if not infos:
            return
        data_size = self.size - self.data_start
        if data_size < 0:
            raise cur.fail(f"file ends at byte {self.size}, before the tensor data section starting at "
                           f"byte {self.data_start}: the file is truncated")
        for name, _, _, offset, _ in infos:
            if offset > data_size:
                raise cur.fail(f"tensor '{name}' has data offset {offset} (byte {self.data_start + offset}), "
                               f"past the end of the file ({self.size} bytes)")
        starts = sorted({info[3] for info in infos}) + [data_size]
        following = dict(itertools.pairwise(starts))
        for name, ne, type_id, offset, _ in infos:
            t = GGUFTensor(name, ne, type_id, offset, self.data_start + offset, following[offset] - offset)
            self.tensors.append(t)
            self._by_name[name] = t

    def _detect_dialect(self) -> str:
        """gguf.md §3.2: the bitpack.dialect key, else the evidence (gguf_dialect.detect)."""
        if "bitpack.dialect" in self.kv:
            value = self.kv["bitpack.dialect"]
            if self.kv_types["bitpack.dialect"] != (ValueType.STRING, None) or value not in DIALECTS:
                raise DialectError(f"{self._label}: bitpack.dialect is {value!r}, not one of {', '.join(DIALECTS)}")
            return value
        end = self.size - self.data_start
        spans = [TensorSpan(t.name, t.type_id, t.shape, t.extent, t.offset + t.extent == end) for t in self.tensors]
        return detect(self.architecture, spans, self.alignment, self._label, list(self.kv))

    def _check_tensor_data(self, cur: Cursor) -> None:
        """Sizes per the dialect, bounds, alignment and the running sum (§1.4, §1.7)."""
        lenient = self.dialect == BITNET_CPP_2024  # that fork checks bounds only (§1.4)
        table = types(self.dialect)
        expected: int | None = 0
        for i, t in enumerate(self.tensors):
            gt = table.get(t.type_id)
            nbytes = gt.nbytes(t.shape) if gt is not None and gt.nbytes is not None else None
            if gt is not None and gt.nbytes is not None and nbytes is None:
                raise cur.fail(f"tensor '{t.name}' has type {gt.name} but ne {list(t.ne)}, a shape that type "
                               "cannot hold (its row length ne0 breaks the type's block rule, gguf.md §1.6)")
            if nbytes is not None and t.offset + nbytes > self.size - self.data_start:
                raise cur.fail(f"tensor '{t.name}' data (offset {t.data_offset}, {nbytes} bytes) runs past "
                               f"the end of the file ({self.size} bytes)")
            problems = []
            if expected is not None and t.offset < expected:  # llama.cpp refuses it, every fork included
                raise cur.fail(f"tensor '{t.name}' has offset {t.offset}, inside the data of the tensor before it "
                               f"(which ends at {expected}): tensors overlap or are out of order")
            if t.offset % self.alignment:
                problems.append(f"tensor '{t.name}' has offset {t.offset}, not a multiple of the alignment "
                                f"{self.alignment}")
            elif expected is not None and t.offset != expected:
                problems.append(f"tensor '{t.name}' has offset {t.offset}, expected {expected} (the padded "
                                "running sum of the preceding tensors' sizes)")
            for msg in problems:  # a gap or misalignment: the 2024-25 fork tolerates it, so it is reported
                if not lenient:
                    raise cur.fail(msg)
                self.warnings.append(msg)
            # an unknown size breaks the chain: the next offset cannot be predicted
            expected = None if nbytes is None else t.offset + pad(nbytes, self.alignment)
            self.tensors[i] = t = dataclasses.replace(t, nbytes=nbytes)
            self._by_name[t.name] = t

    # -- queries -------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        arch = self.kv.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def tensor(self, name: str | GGUFTensor) -> GGUFTensor:
        key = name.name if isinstance(name, GGUFTensor) else name
        try:
            return self._by_name[key]
        except KeyError:
            raise ContainerError(f"{self._label}: no tensor named '{key}'") from None

    def shape(self, name: str | GGUFTensor) -> tuple[int, ...]:
        """NumPy-order shape (ne reversed)."""
        return self.tensor(name).shape

    def ggml_type(self, name: str | GGUFTensor) -> GGMLType | None:
        """What the tensor's type id means in this file's dialect (None: unknown id)."""
        return types(self.dialect).get(self.tensor(name).type_id)

    def type_name(self, name: str | GGUFTensor) -> str:
        gt = self.ggml_type(name)
        return gt.name if gt is not None else f"unknown type {self.tensor(name).type_id}"

    def codec_name(self, name: str | GGUFTensor) -> str | None:
        """The codec of the tensor's type in this dialect, or None for a non-ternary or unknown type."""
        gt = self.ggml_type(name)
        return gt.codec if gt is not None else None

    def raw(self, name: str | GGUFTensor) -> np.ndarray:
        """The tensor's exact bytes (nbytes per the dialect) as a read-only, zero-copy uint8 view."""
        t = self.tensor(name)
        if t.nbytes is None:
            raise ContainerError(f"{self._label}: tensor '{t.name}' has type {t.type_id} ({self.type_name(t)} in "
                                 f"dialect {self.dialect}), whose byte size is unknown; its data cannot be read")
        if self._mm is None:
            raise ContainerError(f"{self._label}: the file is closed")
        return np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=t.data_offset)

    def release(self, name: str | GGUFTensor, start: int = 0, stop: int | None = None) -> None:
        """Let the kernel drop the tensor's pages (streaming readers stay about one tensor
        resident), or those of its bytes start..stop-1 (a tensor read a block of rows at a
        time); views stay valid and are read again if touched."""
        t = self.tensor(name)
        if self._mm is None or not t.nbytes or not hasattr(self._mm, "madvise"):
            return
        first = (t.data_offset + start) // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(t.data_offset + (t.nbytes if stop is None else min(stop, t.nbytes)), self.size)
        if end > first:
            self._mm.madvise(mmap.MADV_DONTNEED, first, end - first)

    def close(self) -> None:
        """Release the mapping (views returned by raw() keep it alive until they go)."""
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # raw() views still use it; it is unmapped when the last one is freed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFFile({self._label!r}, dialect={self.dialect!r}, "
                f"{len(self.tensors)} tensors, {len(self.kv)} keys)")
