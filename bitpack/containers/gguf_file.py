"""GGUF v3 reader and streaming writer (spec/gguf.md §1, §3.2, §8).

The reader memory-maps the file and checks every structural rule of gguf.md §1.7 before
anything is returned, so a crafted or truncated file raises one clear
:class:`~bitpack.errors.ContainerError` naming the byte offset or tensor (pitfalls.md P20),
never another exception and never a partial result. It works out the producer dialect
(§3.2) before it maps a type id to a size or codec, because ids 39 and 42 mean different
things to different producers.

The writer lays out the header and tensor table from the declared sizes, then streams
tensor data in order to a temporary file that is renamed into place only on success.
PyPI ``gguf`` cannot do either job: its reader refuses ids 36/38/42 and its writer cannot
express I2_S/TL1/TL2 (§10).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import mmap
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..codecs.base import pad
from ..errors import ContainerError, DialectError
from .files import StagedFile
from .gguf_dialect import HINT as _DIALECT_HINT
from .gguf_dialect import TensorSpan, detect
from .gguf_kv import U32, U64, Cursor, ValueType, encode_string, encode_value
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

__all__ = ["GGUFFile", "GGUFTensor", "GGUFWarning", "GGUFWriter"]


class GGUFWarning(UserWarning):
    """A tolerated irregularity (offsets in a bitnet-cpp-2024 file, gguf.md §1.7)."""


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


# ---------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------


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
            if t.offset % self.alignment:
                problems.append(f"tensor '{t.name}' has offset {t.offset}, not a multiple of the alignment "
                                f"{self.alignment}")
            elif expected is not None and t.offset != expected:
                problems.append(f"tensor '{t.name}' has offset {t.offset}, expected {expected} (the padded "
                                "running sum of the preceding tensors' sizes)")
            for msg in problems:
                if not lenient:
                    raise cur.fail(msg)
                self.warnings.append(msg)
                warnings.warn(f"{self._label}: {msg}", GGUFWarning, stacklevel=4)
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

    def release(self, name: str | GGUFTensor) -> None:
        """Let the kernel drop the tensor's pages (streaming readers stay about one tensor
        resident); views stay valid and are read again if touched."""
        t = self.tensor(name)
        if self._mm is None or not t.nbytes or not hasattr(self._mm, "madvise"):
            return
        start = t.data_offset // mmap.PAGESIZE * mmap.PAGESIZE
        end = min(t.data_offset + t.nbytes, self.size)
        if end > start:
            self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)

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


# ---------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    name: str
    ne: tuple[int, ...]
    type_id: int
    offset: int
    nbytes: int


class GGUFWriter:
    """Stream a GGUF v3 file: declare KV pairs and tensors, write the header, then data.

    ``add_kv``/``add_tensor`` -> ``write_header()`` -> ``write_tensor()`` once per tensor in
    declaration order -> ``close()``. Output goes to ``.<name>.<random>.part`` beside the
    target and is renamed into place by ``close()`` after an fsync; ``abort()``, or an
    exception inside ``with GGUFWriter(...)``, deletes it (pitfalls.md P20).

    ``dialect``, if given, makes ``add_tensor`` check each declared size against that
    dialect's type table (gguf.md §1.6).
    """

    def __init__(self, path: str | os.PathLike[str], *, alignment: int = DEFAULT_ALIGNMENT,
                 dialect: str | None = None) -> None:
        self.path = Path(path)
        if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1) or alignment >= 2**32:
            raise ContainerError(f"{self.path}: alignment must be a power of two, got {alignment!r}")
        if dialect is not None and dialect not in DIALECTS:
            raise DialectError(f"{self.path}: unknown dialect {dialect!r}; {_DIALECT_HINT}")
        self.alignment = alignment
        self.dialect = dialect
        self._kv: dict[str, bytes] = {}  # key -> encoded (key, type, value)
        self._tensors: list[_Planned] = []
        self._names: set[str] = set()
        self._data_size = 0  # padded running sum (§1.4)
        self._next = 0  # index of the next tensor write_tensor expects
        self._state = "declaring"  # -> "writing" -> "closed" | "aborted"
        self._out: StagedFile | None = None
        self.data_start: int | None = None
        self.bytes_written = 0

    def _fail(self, msg: str) -> ContainerError:
        return ContainerError(f"{self.path}: {msg}")

    def _require(self, state: str, action: str) -> None:
        if self._state != state:
            when = {"declaring": "before write_header()", "writing": "after write_header()"}.get(state, state)
            raise self._fail(f"{action} is only possible {when}; the writer is {self._state}")

    # -- declaring -------------------------------------------------------------------
    def add_kv(self, key: str, value: Any, value_type: int | tuple[int, int | None],
               element_type: int | None = None) -> None:
        """Add one key/value pair. ``value_type`` may be a ``GGUFFile.kv_types`` tuple.

        Arrays: NumPy arrays carry their element type; lists of str are strings; otherwise
        pass ``element_type``. Nested arrays hold NumPy arrays, lists of str, or lists.
        Empty strings and arrays are written (PyPI gguf silently drops them, §10.2).
        """
        self._require("declaring", "add_kv")
        if isinstance(value_type, tuple):
            value_type, element_type = value_type
        vtype = int(value_type)
        what = f"key '{key}'"
        if not isinstance(key, str) or not key:
            raise self._fail(f"keys must be non-empty strings, got {key!r}")
        if key in self._kv:
            raise self._fail(f"duplicate {what}")
        if key == "general.alignment":
            # The alignment is the writer's own setting; written only when it is not 32 (§1.4).
            if value != self.alignment or vtype != ValueType.UINT32:
                raise self._fail(f"general.alignment {value!r} disagrees with GGUFWriter(alignment={self.alignment})")
            return
        self._kv[key] = encode_string(key, what) + U32.pack(vtype) + encode_value(vtype, value, element_type, what)

    def add_tensor(self, name: str, numpy_shape: tuple[int, ...], type_id: int, nbytes: int) -> int:
        """Declare a tensor (NumPy-order shape, GGML type id, exact byte size); returns its offset."""
        self._require("declaring", "add_tensor")
        if not isinstance(name, str) or not name:
            raise self._fail(f"tensor names must be non-empty strings, got {name!r}")
        size = len(name.encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            raise self._fail(f"tensor name '{name}' is {size} bytes; ggml allows at most {MAX_NAME_BYTES}")
        if name in self._names:
            raise self._fail(f"duplicate tensor name '{name}'")
        try:
            shape = tuple(int(d) for d in numpy_shape)
            type_id, nbytes = int(type_id), int(nbytes)
        except (TypeError, ValueError):
            raise self._fail(f"tensor '{name}': bad shape {numpy_shape!r}, type {type_id!r} or size {nbytes!r}") from None
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1 or math.prod(shape) > INT64_MAX:
            raise self._fail(f"tensor '{name}': shape {shape} must have 1 to {MAX_DIMS} dimensions, each >= 1")
        if not 0 <= type_id < 2**32 or nbytes < 1:
            raise self._fail(f"tensor '{name}': bad type id {type_id} or byte size {nbytes}")
        gt = types(self.dialect).get(type_id) if self.dialect else None
        if gt is not None and gt.nbytes is not None and gt.nbytes(shape) != nbytes:
            raise self._fail(f"tensor '{name}': {gt.name} {shape} takes {gt.nbytes(shape)} bytes in "
                             f"{self.dialect}, not {nbytes}")
        offset = self._data_size
        self._tensors.append(_Planned(name, tuple(reversed(shape)), type_id, offset, nbytes))
        self._names.add(name)
        self._data_size = offset + pad(nbytes, self.alignment)
        return offset

    @property
    def total_size(self) -> int:
        """The final file size (known once the header is laid out); no trailing padding."""
        if self.data_start is None:
            raise self._fail("the size is known only after write_header()")
        if not self._tensors:
            return self.data_start
        last = self._tensors[-1]
        return self.data_start + last.offset + last.nbytes

    # -- writing ---------------------------------------------------------------------
    def write_header(self) -> None:
        """Create the temporary file and write header, KV pairs, tensor infos and padding."""
        self._require("declaring", "write_header")
        kv = list(self._kv.values())
        if self.alignment != DEFAULT_ALIGNMENT:
            kv.append(encode_string("general.alignment", "") + U32.pack(ValueType.UINT32)
                      + U32.pack(self.alignment))
        parts = [GGUF_MAGIC, U32.pack(GGUF_VERSION), U64.pack(len(self._tensors)), U64.pack(len(kv)), *kv]
        for t in self._tensors:
            parts += [encode_string(t.name, ""), U32.pack(len(t.ne)), *map(U64.pack, t.ne),
                      U32.pack(t.type_id), U64.pack(t.offset)]
        header = b"".join(parts)
        self.data_start = pad(len(header), self.alignment)
        self._out, self._state = StagedFile(self.path), "writing"
        self._write(header + bytes(self.data_start - len(header)))

    def _write(self, data: Any) -> None:
        try:
            self._out.write(data)
        except ContainerError:
            self._state = "aborted"
            raise
        self.bytes_written += memoryview(data).nbytes

    def write_tensor(self, name: str, data: Any) -> None:
        """Write the next tensor's bytes: exactly its declared nbytes, NumPy array or bytes-like."""
        if self._state == "declaring":
            self.write_header()
        self._require("writing", "write_tensor")
        if self._next >= len(self._tensors):
            raise self._fail(f"tensor '{name}': all {len(self._tensors)} declared tensors are already written")
        t = self._tensors[self._next]
        if name != t.name:
            why = "was not declared" if name not in self._names else "is out of order"
            raise self._fail(f"tensor '{name}' {why}: '{t.name}' is next (tensors are written in declaration order)")
        view = _byte_view(data, f"tensor '{name}'")
        if view.nbytes != t.nbytes:
            raise self._fail(f"tensor '{name}': got {view.nbytes} bytes of data, declared {t.nbytes}")
        gap = self.data_start + t.offset - self.bytes_written  # zero padding up to the offset
        if gap:
            self._write(bytes(gap))
        self._write(view)
        self._next += 1

    def close(self) -> None:
        """Finish: check every tensor was written, fsync, rename into place."""
        if self._state == "closed":
            return
        if self._state == "declaring":
            self.write_header()
        if self._state != "writing":
            raise self._fail(f"close() on a writer that is {self._state}")
        if self._next < len(self._tensors):
            missing = [t.name for t in self._tensors[self._next :]]
            raise self._fail(f"{len(missing)} declared tensors were not written, first '{missing[0]}'")
        assert self.bytes_written == self.total_size, (self.bytes_written, self.total_size)
        try:
            self._out.commit()
        except BaseException:
            self._state = "aborted"
            raise
        self._out, self._state = None, "closed"

    def abort(self) -> None:
        """Discard the output: close and delete the temporary file. Safe to call repeatedly."""
        if self._state in ("closed", "aborted"):
            return
        self._state = "aborted"
        if self._out is not None:
            self._out.discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None or self._state == "aborted":
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise

    def __del__(self) -> None:
        # A writer dropped without close() must not leave a .part file behind.
        if getattr(self, "_state", None) == "writing":
            self.abort()


def _byte_view(data: Any, what: str) -> memoryview:
    """A flat byte view of ``data`` without copying it (memmaps stay on disk)."""
    if isinstance(data, np.ndarray):
        if data.dtype.hasobject:
            raise ContainerError(f"{what}: object arrays cannot be written")
        if data.dtype.byteorder == ">":
            data = data.astype(data.dtype.newbyteorder("<"))  # GGUF is little-endian (§1)
        data = np.ascontiguousarray(data).reshape(-1)  # copies only a non-contiguous tensor
        return memoryview(data.view(np.uint8))
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise ContainerError(f"{what}: expected a NumPy array or bytes-like data, got {type(data).__name__}") from None
