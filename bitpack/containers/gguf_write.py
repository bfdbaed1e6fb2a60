"""GGUF v3 streaming writer (spec/gguf.md §1, §8).

The writer lays out the header and tensor table from the declared sizes, then streams
tensor data in order to a temporary file that is renamed into place only on success.
PyPI ``gguf`` cannot do this job: its writer cannot express I2_S/TL1/TL2 (§10). The
reader is :mod:`.gguf_read`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..codecs.base import pad
from ..errors import ContainerError, DialectError
from .files import StagedFile
from .gguf_dialect import HINT as _DIALECT_HINT
from .gguf_kv import U32, U64, ValueType, encode_string, encode_value
from .gguf_types import (
    DEFAULT_ALIGNMENT,
    DIALECTS,
    GGUF_MAGIC,
    GGUF_VERSION,
    INT64_MAX,
    MAX_DIMS,
    MAX_NAME_BYTES,
    types,
)

__all__ = ["GGUFWriter"]


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
    declaration order (or ``write_part()`` a piece at a time) -> ``close()``. Output goes to
    ``.<name>.<random>.part`` beside the target and is renamed into place by ``close()`` after
    an fsync; ``abort()``, or an exception inside ``with GGUFWriter(...)``, deletes it
    (pitfalls.md P20).

    ``dialect``, if given, makes ``add_tensor`` check each declared size against that
    dialect's type table (gguf.md §1.6). ``digest``: ``sha256`` holds the file's digest after
    ``close()``, hashed while its fsync waits for the disk.
    """

    def __init__(self, path: str | os.PathLike[str], *, alignment: int = DEFAULT_ALIGNMENT,
                 dialect: str | None = None, digest: bool = False) -> None:
        self.path = Path(path)
        if not isinstance(alignment, int) or alignment < 1 or alignment & (alignment - 1) or alignment >= 2**32:
            raise ContainerError(f"{self.path}: alignment must be a power of two, got {alignment!r}")
        if dialect is not None and dialect not in DIALECTS:
            raise DialectError(f"{self.path}: unknown dialect {dialect!r}; {_DIALECT_HINT}")
        self.alignment = alignment
        self.dialect = dialect
        self.digest = digest
        self.sha256: str | None = None
        self._kv: dict[str, bytes] = {}  # key -> encoded (key, type, value)
        self._tensors: list[_Planned] = []
        self._names: set[str] = set()
        self._data_size = 0  # padded running sum (§1.4)
        self._next = 0  # index of the next tensor write_tensor expects
        self._partial = 0  # bytes of that tensor already written by write_part
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
        self._out, self._state = StagedFile(self.path, digest=self.digest), "writing"
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
        self._write_data(name, data, whole=True)

    def write_part(self, name: str, data: Any) -> None:
        """Write the next piece of the next tensor's bytes; the tensor is complete once its
        declared nbytes are in. A large tensor can so be produced a block of rows at a time,
        never whole in memory."""
        self._write_data(name, data, whole=False)

    def _write_data(self, name: str, data: Any, whole: bool) -> None:
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
        if whole and self._partial:
            raise self._fail(f"tensor '{name}': {self._partial} of its bytes are already written in parts")
        written = self._partial + view.nbytes
        if written > t.nbytes or (whole and written != t.nbytes):
            raise self._fail(f"tensor '{name}': got {written} bytes of data, declared {t.nbytes}")
        gap = self.data_start + t.offset - self.bytes_written  # zero padding up to the offset
        if gap and not self._partial:
            self._write(bytes(gap))
        self._write(view)
        self._next, self._partial = (self._next + 1, 0) if written == t.nbytes else (self._next, written)

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
        self.sha256 = self._out.sha256
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
