"""A stack's tensors in either container, seen one way: names, (dtype, shape, nbytes), raw arrays.

Dtype names are spelled as safetensors spells them, plus GGUF's I8 for the packed signs
(formats/bitstack.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..containers.gguf_read import GGUFFile
from ..containers.safetensors_read import Checkpoint
from ..containers.sniff import has_gguf_magic
from ..errors import BitpackError
from .floats import STORAGE


class Store:
    """One container's tensors: dtype names as safetensors spells them, plus GGUF's I8."""

    container: str
    files: list[Path]
    metadata: dict[str, Any]

    def names(self) -> list[str]: ...
    def info(self, name: str) -> tuple[str, tuple[int, ...], int]: ...
    def raw(self, name: str) -> np.ndarray: ...
    def release(self, name: str) -> None: ...
    def close(self) -> None: ...


class _SafetensorsStore(Store):
    container = "safetensors"

    def __init__(self, path: Path) -> None:
        self.ckpt = Checkpoint(path)
        self.files = list(self.ckpt.files) + ([self.ckpt.index_path] if self.ckpt.index_path else [])
        self.metadata = dict(self.ckpt.metadata)
        self.warnings = list(self.ckpt.warnings)

    def names(self) -> list[str]:
        return self.ckpt.names()

    def info(self, name: str) -> tuple[str, tuple[int, ...], int]:
        i = self.ckpt.info(name)
        return i.dtype, tuple(i.shape), i.nbytes

    def raw(self, name: str) -> np.ndarray:
        return self.ckpt.raw(name)

    def release(self, name: str) -> None:
        self.ckpt.release(name)

    def close(self) -> None:
        self.ckpt.close()


class _GGUFStore(Store):
    container = "gguf"
    _VIEW: ClassVar[dict[str, np.dtype]] = {"I8": np.dtype("u1"), **STORAGE}

    def __init__(self, path: Path) -> None:
        self.f = GGUFFile(path)
        self.files = [path]
        self.metadata = dict(self.f.kv)
        self.warnings = list(self.f.warnings)

    def names(self) -> list[str]:
        return [t.name for t in self.f.tensors]

    def info(self, name: str) -> tuple[str, tuple[int, ...], int]:
        t = self.f.tensor(name)
        return self.f.type_name(t), tuple(t.shape), t.nbytes if t.nbytes is not None else -1

    def raw(self, name: str) -> np.ndarray:
        dtype, shape, _ = self.info(name)
        if dtype not in self._VIEW:
            raise BitpackError(f"{self.files[0]}: {name} is {dtype}; a stack holds I8, F16, BF16 and F32 tensors")
        return self.f.raw(name).view(self._VIEW[dtype]).reshape(shape)

    def release(self, name: str) -> None:
        self.f.release(name)

    def close(self) -> None:
        self.f.close()


def open_store(path: Path) -> Store:
    """The store of a stack: one GGUF file (by its magic), else safetensors files."""
    if has_gguf_magic(path):
        return _GGUFStore(path)
    return _SafetensorsStore(path)


def check_tensor(store: Store, tensor: str, dtype: str, shape: tuple[int, ...], where: str) -> None:
    """Refuse ``tensor`` unless it is ``dtype`` of ``shape``."""
    got_dtype, got_shape, _ = store.info(tensor)
    if got_dtype != dtype or tuple(got_shape) != tuple(shape):
        raise BitpackError(f"{where}: {tensor} is {got_dtype} {list(got_shape)}; expected {dtype} {list(shape)}")


__all__ = ["Store", "check_tensor", "open_store"]
