"""Safetensors streaming writer (checkpoints.md §11): the header from the declared shapes,
then each tensor's bytes in order, into a temporary file renamed into place on success.
The reader is :mod:`.safetensors_read`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..dtypes import bf16_bits
from ..errors import ContainerError
from .files import StagedFile
from .safetensors_read import DTYPES, TensorInfo

__all__ = ["SafetensorsWriter"]


class SafetensorsWriter:
    """Stream a safetensors file: declare every tensor with :meth:`add`, then :meth:`write` each.

    The header is computed from the declared shapes alone (in declaration order), so tensors are
    written one at a time and never held together in memory. Bytes go to a temporary
    ``.<name>.<random>.part`` in the target folder, renamed over ``path`` by :meth:`close`; an
    exception inside ``with`` (or :meth:`abort`) deletes it.
    """

    def __init__(self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None,
                 *, overwrite: bool = False, digest: bool = False):
        """``digest``: hash the file while its fsync waits for the disk; ``sha256`` holds the
        digest once :meth:`close` has published it."""
        self.path = Path(path)
        if metadata is not None and not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in metadata.items()):
            raise ContainerError(f"{self.path}: __metadata__ must map strings to strings")
        if not overwrite and self.path.exists():
            raise ContainerError(f"{self.path} already exists (pass --overwrite to replace it)")
        self.metadata = None if metadata is None else dict(metadata)
        self.overwrite = overwrite
        self._decl: dict[str, TensorInfo] = {}
        self._cursor = 0  # data bytes declared so far
        self._order: list[str] = []
        self._next = 0  # index into _order of the next tensor to write
        self.sha256: str | None = None
        self._out: StagedFile | None = StagedFile(self.path, overwrite=overwrite, digest=digest)
        self._header_written = False

    def add(self, name: str, dtype: str, shape: Iterable[int]) -> None:
        if self._header_written:
            raise ContainerError(f"{self.path}: cannot declare {name!r} after writing began")
        shape = tuple(shape)
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ContainerError(f"{self.path}: invalid tensor name {name!r}")
        if name in self._decl:
            raise ContainerError(f"{self.path}: tensor {name!r} declared twice")
        if dtype not in DTYPES:
            raise ContainerError(f"{self.path}: tensor {name!r}: unsupported dtype {dtype!r}")
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
                   for d in shape):
            raise ContainerError(f"{self.path}: tensor {name!r}: bad shape {shape!r}")
        shape = tuple(int(d) for d in shape)
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        self._decl[name] = TensorInfo(name, dtype, shape, nbytes, self._cursor)  # relative offset
        self._order.append(name)
        self._cursor += nbytes

    def header_bytes(self) -> bytes:
        """The 8-byte length and the JSON header, padded with spaces to a multiple of 8 as the
        reference writer does (so the data section starts 8-byte aligned)."""
        header: dict[str, Any] = {} if self.metadata is None else {"__metadata__": self.metadata}
        for info in self._decl.values():
            header[info.name] = {"dtype": info.dtype, "shape": list(info.shape),
                                 "data_offsets": [info.offset, info.offset + info.nbytes]}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)
        return len(text).to_bytes(8, "little") + text

    def _ensure_header(self) -> None:
        if not self._header_written:
            self._out.write(self.header_bytes())
            self._header_written = True

    def write(self, name: str, array: np.ndarray) -> None:
        """Write the next declared tensor. BF16 takes uint16 bits or bf16-representable float32."""
        if self._out is None:
            raise ContainerError(f"{self.path}: writer is closed")
        if self._next >= len(self._order) or self._order[self._next] != name:
            expected = self._order[self._next] if self._next < len(self._order) else "nothing more"
            raise ContainerError(f"{self.path}: tensor {name!r} written out of order "
                                 f"(expected {expected!r})")
        info = self._decl[name]
        arr = np.asarray(array)
        if tuple(arr.shape) != info.shape:
            raise ContainerError(f"{self.path}: tensor {name!r}: shape {arr.shape} does not match "
                                 f"the declared {list(info.shape)}")
        target = DTYPES[info.dtype]
        if info.dtype == "BF16" and arr.dtype == np.float32:
            try:
                arr = bf16_bits(arr)
            except ContainerError as err:
                raise ContainerError(f"{self.path}: tensor {name!r}: {err}") from None
        elif arr.dtype.kind != target.kind or arr.dtype.itemsize != target.itemsize:
            hint = " (uint16 bits or float32)" if info.dtype == "BF16" else ""
            raise ContainerError(f"{self.path}: tensor {name!r}: got {arr.dtype}, declared "
                                 f"{info.dtype}{hint}; bitpack never casts silently")
        flat = np.ascontiguousarray(arr, dtype=target).reshape(-1).view(np.uint8)
        try:
            self._ensure_header()
            self._out.write(flat.data)  # disk full and the like: one clear line, the temporary gone
        except ContainerError as err:
            self._out = None
            raise ContainerError(f"{err}, while writing tensor {name!r}") from None
        self._next += 1

    def close(self) -> None:
        """Check every declared tensor was written, flush, and rename into place."""
        if self._out is None:
            return
        if self._next != len(self._order):
            missing = self._order[self._next:]
            self.abort()
            raise ContainerError(f"{self.path}: {len(missing)} declared tensors never written "
                                 f"(first: {missing[0]!r}); nothing was written")
        try:
            self._ensure_header()
            self._out.commit()
        except BaseException:
            self.abort()
            raise
        self.sha256 = self._out.sha256
        self._out = None

    def abort(self) -> None:
        """Discard everything written; the target path is left untouched."""
        if self._out is not None:
            self._out.discard()
            self._out = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a forgotten writer must not leave a .part file behind
        try:
            self.abort()
        except Exception:  # noqa: BLE001, S110 -- a finalizer must never raise
            pass
