"""Safetensors files without torch: a hardened lazy reader and sharded checkpoints.

Format (checkpoints.md §11): 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data section) plus an optional ``"__metadata__"`` str -> str map, then the data, row-major and
little-endian.

The reader checks everything the reference implementation (huggingface/safetensors) checks and
a little more (duplicate names, which serde_json silently collapses): a crafted or truncated file
is one clear :class:`ContainerError`, never a crash, a huge allocation or a partial success
(pitfalls.md P20). Data is memory-mapped, so opening a checkpoint parses headers only and
reading a tensor touches only its bytes (P7).

NumPy has no bfloat16: BF16 is read as uint16 bits and widened exactly (f32 bits = u16 << 16).
The streaming writer is :mod:`.safetensors_write`.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, Self

import numpy as np

from ..dtypes import FLOAT_STORAGE, f32_from_bf16
from ..errors import ContainerError
from ..jsonsafe import check_depth

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit against JSON bombs

# Stored dtype -> NumPy dtype of the raw view (explicitly little-endian). The floats are
# dtypes.FLOAT_STORAGE: BF16 is viewed as its uint16 bit patterns; array() widens it.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": FLOAT_STORAGE["F16"], "BF16": FLOAT_STORAGE["BF16"],
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": FLOAT_STORAGE["F32"],
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}


# --- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file; ``offset`` is the absolute byte offset in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


class _Duplicate(Exception):
    pass


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid JSON")


def _is_int(x: Any) -> bool:
    return type(x) is int  # bool is an int subclass; true/false are not offsets or dimensions


class SafetensorsFile:
    """A validated, memory-mapped, read-only view of one .safetensors file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._mm: np.ndarray | None = None
        try:
            with self.path.open("rb") as fh:
                self._size = os.fstat(fh.fileno()).st_size
                head = fh.read(8)
                if len(head) < 8:
                    self._fail(f"file is {self._size} bytes, too short for the 8-byte header length")
                n = int.from_bytes(head, "little")
                if n > self._size - 8:
                    self._fail(f"header length {n} is larger than the rest of the file "
                               f"({self._size - 8} bytes): truncated or not a safetensors file")
                if n > MAX_HEADER_BYTES:
                    self._fail(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
                raw_header = fh.read(n)
        except OSError as err:
            raise ContainerError(f"{self.path}: cannot read ({err.strerror or err})") from None
        if len(raw_header) != n:  # the file shrank under us
            self._fail("file changed while reading its header")
        self._data_start = 8 + n
        self._data_len = self._size - self._data_start
        self._parse_header(raw_header)

    # -- header validation

    def _fail(self, what: str, name: str | None = None) -> NoReturn:
        where = f"{self.path}: tensor {name!r}: " if name is not None else f"{self.path}: "
        raise ContainerError(where + what)

    def _parse_header(self, raw: bytes) -> None:
        try:
            header = json.loads(check_depth(raw.decode("utf-8"), str(self.path)), object_pairs_hook=_no_duplicates,
                                parse_constant=_reject_constant)
        except _Duplicate as dup:
            self._fail(f"header names {str(dup)!r} twice (duplicate keys are not allowed)")
        except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError
            self._fail(f"header is not valid UTF-8 JSON ({err})")
        if not isinstance(header, dict):
            self._fail(f"header is a JSON {type(header).__name__}, not an object")
        meta = header.pop("__metadata__", None)
        if meta is None:  # the reference accepts a null __metadata__ as absent
            meta = {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            self._fail("__metadata__ must map strings to strings")
        self.metadata: dict[str, str] = meta
        self._infos: dict[str, TensorInfo] = {}
        spans = []
        for name, entry in header.items():
            begin, end = self._check_entry(name, entry)
            spans.append((begin, end, name))
        # The data section must be covered exactly, without holes or overlaps (the reference
        # implementation refuses both): no hidden bytes for polyglot files, no aliasing.
        spans.sort()
        cursor, prev = 0, None
        for begin, end, name in spans:
            if begin < cursor:
                self._fail(f"data_offsets [{begin}, {end}] overlap tensor {prev!r} "
                           f"(which ends at {cursor})", name)
            if begin > cursor:
                self._fail(f"data_offsets [{begin}, {end}] leave a gap of {begin - cursor} "
                           f"unindexed bytes at data offset {cursor}", name)
            cursor, prev = end, name
        if cursor != self._data_len:
            self._fail(f"{self._data_len - cursor} bytes after the last tensor are not covered by "
                       f"any tensor (data section is {self._data_len} bytes, tensors end at {cursor})")

    def _check_entry(self, name: str, entry: Any) -> tuple[int, int]:
        if not isinstance(entry, dict):
            self._fail("entry is not a JSON object", name)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:  # a list or object is not hashable
            self._fail(f"unsupported dtype {dtype!r} (bitpack reads {', '.join(DTYPES)})", name)
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            self._fail(f"shape {shape!r} is not a list of non-negative integers", name)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)):
            self._fail(f"data_offsets {offsets!r} is not a pair of integers", name)
        begin, end = offsets
        if not 0 <= begin <= end <= self._data_len:
            self._fail(f"data_offsets [{begin}, {end}] are outside the data section "
                       f"[0, {self._data_len}] (truncated file?)", name)
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != nbytes:
            self._fail(f"data_offsets [{begin}, {end}] span {end - begin} bytes but {dtype} "
                       f"{shape} needs {nbytes}", name)
        self._infos[name] = TensorInfo(name, dtype, tuple(shape), nbytes, self._data_start + begin)
        return begin, end

    # -- data access

    def _data(self) -> np.ndarray:
        # Mapped on first use, so opening many shards costs no file descriptors.
        if self._mm is None:
            try:
                if os.path.getsize(self.path) != self._size:
                    self._fail(f"file size changed since it was opened (was {self._size} bytes)")
                if self._data_len == 0:  # mmap cannot map zero bytes
                    self._mm = np.empty(0, np.uint8)
                    self._mm.flags.writeable = False
                else:
                    with open(self.path, "rb") as fh:
                        self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                    self._mm = np.frombuffer(self._map, dtype=np.uint8, count=self._data_len,
                                             offset=self._data_start)
            except OSError as err:
                raise ContainerError(f"{self.path}: cannot map data ({err.strerror or err})") from None
        return self._mm

    def names(self) -> list[str]:
        """Tensor names in header order."""
        return list(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    def info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise ContainerError(f"{self.path}: no tensor named {name!r}") from None

    def raw(self, name: str) -> np.ndarray:
        """Zero-copy read-only view in the stored dtype (BF16 as uint16 bits)."""
        info = self.info(name)
        begin = info.offset - self._data_start
        return self._data()[begin:begin + info.nbytes].view(DTYPES[info.dtype]).reshape(info.shape)

    def array(self, name: str, dtype: Any = None) -> np.ndarray:
        """The tensor in its natural dtype (BF16 -> float32), or converted exactly to ``dtype``.

        Without conversion this is the read-only view of :meth:`raw`. A conversion happens only
        when it is lossless (``np.can_cast(..., "safe")``), e.g. F16/BF16/F32 -> float32; a lossy
        one (F64 -> float32, I32 -> float32) is refused rather than rounded.
        """
        info = self.info(name)
        out = self.raw(name)
        if info.dtype == "BF16":
            out = f32_from_bf16(out)
        if dtype is None or np.dtype(dtype) == out.dtype:
            return out
        target = np.dtype(dtype)
        if not np.can_cast(out.dtype, target, "safe"):
            self._fail(f"cannot convert {info.dtype} to {target} exactly", name)
        return out.astype(target)

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None:
        """Tell the kernel the tensor's pages are no longer needed, so a streaming conversion's
        resident memory stays about one tensor however large the file -- or only those of its
        bytes start..stop-1, for a tensor read a block of rows at a time (views stay valid:
        the pages are simply read again if touched)."""
        if getattr(self, "_map", None) is None:
            return
        info = self.info(name)
        page = mmap.PAGESIZE
        start = (info.offset + start) // page * page
        end = min(info.offset + (info.nbytes if stop is None else min(stop, info.nbytes)), self._size)
        if end > start and hasattr(self._map, "madvise"):
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        """Drop the mapping (views handed out keep it alive until they are freed)."""
        self._mm = None
        self._map = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SafetensorsFile({str(self.path)!r}, {len(self)} tensors)"


# --- sharded checkpoints ----------------------------------------------------------------------

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def pick_weights(names: Iterable[str], where: str) -> tuple[str, str | None]:
    """(the file holding a folder's checkpoint, a warning or None), from the folder's file
    names: model.safetensors (transformers prefers it over an index when both exist), else
    the one index, else the one .safetensors file. The Hub source picks what to download
    by the same rule."""
    names = set(names)
    if SINGLE_NAME in names:
        both = INDEX_NAME in names
        return SINGLE_NAME, (f"{where}: both {SINGLE_NAME} and {INDEX_NAME} exist; reading {SINGLE_NAME} "
                             "as transformers does") if both else None
    if INDEX_NAME in names:
        return INDEX_NAME, None
    indexes = sorted(n for n in names if n.endswith(".safetensors.index.json"))
    if len(indexes) > 1:
        raise ContainerError(f"{where}: several index files ({', '.join(indexes)}); pass the one to read")
    if indexes:
        return indexes[0], None
    files = sorted(n for n in names if n.endswith(".safetensors"))
    if len(files) == 1:
        return files[0], None
    if not files:
        raise ContainerError(f"{where}: no .safetensors file and no {INDEX_NAME}")
    raise ContainerError(f"{where}: {len(files)} .safetensors files but no {INDEX_NAME} saying which tensors "
                         f"belong to the model ({', '.join(files)})")


def shard_name_ok(name: str) -> bool:
    """A shard named by an index must stay inside its folder: no absolute path, no ``..``.
    (The file itself may be a symlink elsewhere: the Hub cache links every file into blobs/.)"""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def read_index(index: Path, label: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """(weight_map, metadata) of a sharded checkpoint's index JSON, checked: the one parser of
    the index, used by :class:`Checkpoint` and by the Hub source choosing what to download.

    The weight_map maps tensor names to shard file names, each inside the index's folder
    (:func:`shard_name_ok`); a key named twice is refused. ``label`` prefixes the messages
    (default: the index path).
    """
    where = str(index) if label is None else label
    try:
        doc = json.loads(check_depth(index.read_text(encoding="utf-8"), where), object_pairs_hook=_no_duplicates)
    except _Duplicate as dup:
        raise ContainerError(f"{where}: key {str(dup)!r} appears twice") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ContainerError(f"{where}: not a readable JSON index ({err})") from None
    wmap = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
        raise ContainerError(f"{where}: no weight_map object mapping tensor names to shard files")
    for fname in sorted(set(wmap.values())):
        if not shard_name_ok(fname):
            raise ContainerError(f"{where}: shard {fname!r} lies outside {index.parent}")
    metadata = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    return wmap, metadata


class Checkpoint:
    """One safetensors file or a sharded set, read through one name -> tensor API.

    ``path`` may be a directory (``model.safetensors``; else ``model.safetensors.index.json``;
    else the only ``*.safetensors.index.json`` or the only ``*.safetensors``), an index JSON
    file, or a single .safetensors file. Headers of every shard are parsed and cross-checked at
    open; tensor data is read on demand. ``warnings`` lists oddities that were tolerated.
    """

    def __init__(self, path: str | os.PathLike[str]):
        path = Path(path)
        self.warnings: list[str] = []
        self.index_metadata: dict[str, Any] = {}
        if path.is_dir():
            path = self._pick_in_dir(path)
        if not path.is_file():
            raise ContainerError(f"{path}: no such file")
        self.path = path
        if path.name.endswith(".json"):
            self._open_index(path)
        else:
            shard = SafetensorsFile(path)
            self.shards = [shard]
            self._where = {name: shard for name in shard.names()}

    def _pick_in_dir(self, d: Path) -> Path:
        name, warning = pick_weights([p.name for p in d.iterdir() if p.is_file()], str(d))
        if warning:
            self.warnings.append(warning)
        return d / name

    def _open_index(self, index: Path) -> None:
        wmap, self.index_metadata = read_index(index)
        base = index.parent
        by_file: dict[str, SafetensorsFile] = {}
        for fname in sorted(set(wmap.values())):
            shard_path = base / fname
            if not shard_path.is_file():
                raise ContainerError(f"{index}: shard {fname!r} does not exist")
            by_file[fname] = SafetensorsFile(shard_path)
        self.shards = list(by_file.values())
        self._where = {}
        for name, fname in wmap.items():
            if name not in by_file[fname]:
                raise ContainerError(f"{index}: tensor {name!r} is mapped to {fname} "
                                     "but that shard does not contain it")
            self._where[name] = by_file[fname]
        for fname, shard in by_file.items():
            for name in shard.names():
                owner = self._where.get(name)
                if owner is not None and owner is not shard:
                    raise ContainerError(f"{index}: tensor {name!r} appears in both "
                                         f"{owner.path.name} and {fname}")
                if owner is None:  # not dropped: reading it is harmless, hiding it is not
                    self.warnings.append(f"{index}: tensor {name!r} in {fname} is missing "
                                         "from the weight_map; reading it anyway")
                    self._where[name] = shard

    @property
    def index_path(self) -> Path | None:
        """The index JSON when the checkpoint is sharded through one."""
        return self.path if self.path.name.endswith(".json") else None

    @property
    def files(self) -> list[Path]:
        """Shard paths, in index order, for sha256 receipts (see also :attr:`index_path`)."""
        return [s.path for s in self.shards]

    @property
    def metadata(self) -> dict[str, str]:
        """``__metadata__`` of the first shard; use :meth:`metadata_of` for a given tensor's shard."""
        return self.shards[0].metadata if self.shards else {}

    def shard_of(self, name: str) -> SafetensorsFile:
        try:
            return self._where[name]
        except KeyError:
            raise ContainerError(f"{self.path}: no tensor named {name!r}") from None

    def metadata_of(self, name: str) -> dict[str, str]:
        return self.shard_of(name).metadata

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __len__(self) -> int:
        return len(self._where)

    def info(self, name: str) -> TensorInfo:
        return self.shard_of(name).info(name)

    def raw(self, name: str) -> np.ndarray:
        return self.shard_of(name).raw(name)

    def array(self, name: str, dtype: Any = None) -> np.ndarray:
        return self.shard_of(name).array(name, dtype)

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None:
        self.shard_of(name).release(name, start, stop)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
