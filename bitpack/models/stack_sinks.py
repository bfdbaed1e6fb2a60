"""Where a BitStack stack's tensors go: an HF-style safetensors directory (shards) or one GGUF
file, both streamed in declaration order, and the block order patched into the written
header once it is known (formats/bitstack.md "The order field").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bitstack.budget import BudgetTable
from ..containers.gguf_kv import U32, U64, ValueType, encode_string, value_type
from ..containers.gguf_read import GGUFFile
from ..containers.gguf_types import MAINLINE, types
from ..containers.gguf_write import GGUFWriter
from ..containers.hf_dir import COMPRESSION_CONFIG, ModelDirWriter
from ..containers.safetensors_read import DTYPES, SINGLE_NAME
from ..dtypes import FLOAT_STORAGE
from ..errors import BitpackError
from .stack_format import KEY_ORDER


@dataclass
class StackTensor:
    """One tensor of a stack as the writer declares it before writing."""

    name: str
    dtype: str  # safetensors dtype name; signs are U8 (I8 in GGUF)
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[self.dtype].itemsize



def _order_needle(placeholder: str) -> bytes:
    return json.dumps({KEY_ORDER: placeholder}, separators=(",", ":"), ensure_ascii=False)[1:-1].encode()


class SafetensorsSink:
    """Tensors in declaration order across shards of about ``shard_bytes``; each shard's header
    carries the metadata, and where its order placeholder sits is remembered for patching."""

    def __init__(self, writer: ModelDirWriter, tensors: list[StackTensor], metadata: dict[str, str],
                 shard_bytes: int, placeholder: str | None) -> None:
        groups: list[list[StackTensor]] = [[]]
        size = 0
        for t in tensors:
            if groups[-1] and size + t.nbytes > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(t)
            size += t.nbytes
        self.writer, self.groups, self.metadata, self.placeholder = writer, groups, metadata, placeholder
        n = len(groups)
        self.files = [SINGLE_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self.shard_of = {t.name: i for i, g in enumerate(groups) for t in g}
        self.sites: list[tuple[Path, int]] = []
        self._w = None
        self._idx = -1
        self.total = sum(t.nbytes for t in tensors)

    def write(self, name: str, array: np.ndarray) -> None:
        idx = self.shard_of[name]
        if idx != self._idx:
            self._finish()
            self._start(idx)
        self._w.write(name, array)

    def _start(self, idx: int) -> None:
        w = self.writer.safetensors(self.files[idx], self.metadata)
        for t in self.groups[idx]:
            w.add(t.name, t.dtype, t.shape)
        if self.placeholder is not None:
            header = w.header_bytes()
            needle = _order_needle(self.placeholder)
            at = header.find(needle)
            if at < 0 or header.find(needle, at + 1) >= 0:
                w.abort()
                raise BitpackError(f"{w.path}: cannot locate the order field in the header")
            self.sites.append((w.path, at + len(needle) - len(self.placeholder.encode()) - 1))
        self._w, self._idx = w, idx

    def _finish(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    def close(self) -> None:
        for idx in range(self._idx + 1, len(self.groups)):  # shards left (only when nothing was written)
            self._finish()
            self._start(idx)
        self._finish()
        if len(self.files) > 1:
            self.writer.write_index({t.name: self.files[i] for i, g in enumerate(self.groups) for t in g}, self.total)

    def abort(self) -> None:
        if self._w is not None:
            self._w.abort()
            self._w = None

    def patch(self, text: str) -> None:
        data = text.encode()
        for path, offset in self.sites:
            _patch(path, offset, data, self.placeholder.encode())


def _patch(path: Path, offset: int, data: bytes, expect: bytes) -> None:
    """Overwrite the placeholder at ``offset`` with ``data`` of the same length, in place."""
    if len(data) != len(expect):
        raise BitpackError(f"{path}: order field is {len(expect)} bytes, the order {len(data)}")
    try:
        with open(path, "r+b") as fh:
            fh.seek(offset)
            if fh.read(len(expect)) != expect:
                raise BitpackError(f"{path}: the order placeholder is not at byte {offset}")
            fh.seek(offset)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise BitpackError(f"{path}: cannot write the block order ({err.strerror or err})") from None


_GGUF_DTYPE = {"U8": "I8", **{name: name for name in FLOAT_STORAGE}}  # GGUF spells stored floats alike


class GGUFSink:
    def __init__(self, path: Path, kv: list[tuple[str, Any, Any]], tensors: list[StackTensor]) -> None:
        by_name = {t.name: t for t in types(MAINLINE).values()}
        self.path = path
        self.w = GGUFWriter(path)
        try:
            for key, value, kind in kv:
                self.w.add_kv(key, value, value_type(kind) if isinstance(kind, (str, tuple)) else kind)
            for t in tensors:
                gt = by_name[_GGUF_DTYPE[t.dtype]]
                self.w.add_tensor(t.name, t.shape, gt.id, t.nbytes)
            self.w.write_header()
        except BaseException:
            self.w.abort()
            raise

    def write(self, name: str, array: np.ndarray) -> None:
        self.w.write_tensor(name, array)

    def close(self) -> None:
        self.w.close()

    def abort(self) -> None:
        self.w.abort()


def patch_gguf_order(path: Path, order: list[int]) -> None:
    """Fill the INT32 array ``bitpack.bitstack.order`` (written as -1s) with the order."""
    n = len(order)
    f = GGUFFile(path)
    try:
        data_start = f.data_start
    finally:
        f.close()
    needle = encode_string(KEY_ORDER, "") + U32.pack(ValueType.ARRAY) + U32.pack(ValueType.INT32) + U64.pack(n)
    with open(path, "rb") as fh:
        header = fh.read(data_start)
    at = header.find(needle)
    if at < 0 or header.find(needle, at + 1) >= 0:
        raise BitpackError(f"{path}: cannot locate {KEY_ORDER} in the header")
    at += len(needle)
    _patch(path, at, np.asarray(order, dtype="<i4").tobytes(), np.full(n, -1, dtype="<i4").tobytes())
    g = GGUFFile(path)  # the patched header must parse and hold exactly the order
    try:
        if [int(x) for x in np.asarray(g.kv[KEY_ORDER]).reshape(-1)] != list(order):
            raise BitpackError(f"{path}: the patched order does not read back")
    finally:
        g.close()


def write_compression_config(writer: ModelDirWriter, table: BudgetTable, keys: dict[str, str]) -> None:
    """compression_config.json streamed one configuration at a time (32 MB for an 8B model)."""
    path = writer.path_for(COMPRESSION_CONFIG)
    key_text = [json.dumps(keys[name]) for name in table.matrices]
    counts = [1] * len(key_text)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("[")
            for i in range(len(table)):
                if i:
                    counts[table.order[i - 1]] += 1
                    fh.write(",\n")
                fh.write(f'{{"memory":{table.config_bytes(i)},"layers":{{'
                         + ",".join(f"{k}:{c}" for k, c in zip(key_text, counts)) + "}}")
            fh.write("]\n")
    except OSError as err:
        raise BitpackError(f"cannot write {path} ({err.strerror or err})") from None


__all__ = ["GGUFSink", "SafetensorsSink", "StackTensor", "patch_gguf_order", "write_compression_config"]
