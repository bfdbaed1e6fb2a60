"""What a local path is, from its first bytes (Pillow style, STYLE.md): a GGUF file (the magic,
gguf.md §1), a safetensors file or index (an 8-byte header length, then the JSON header's
``{``), or an HF model directory (config.json inside). The one place these tests live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..errors import BitpackError
from .gguf_types import GGUF_MAGIC


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def has_gguf_magic(path: Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic."""
    return path.is_file() and _head(path, len(GGUF_MAGIC)) == GGUF_MAGIC


def sniff(path: Path) -> Literal["gguf", "safetensors"]:
    """"gguf" or "safetensors" for what ``path`` is; a clear error when it is neither."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "safetensors"
        raise BitpackError(f"{path} is a directory without config.json; not an HF model directory")
    if not path.is_file():
        raise BitpackError(f"{path} does not exist")
    head = _head(path, 16)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if path.suffix == ".json" or (len(head) >= 9 and head[8:9] == b"{"):  # index, or safetensors header
        return "safetensors"
    raise BitpackError(f"{path} is neither a GGUF file, a safetensors file nor an HF model directory")
