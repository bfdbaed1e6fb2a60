"""bitpack: convert, verify and pack ternary (BitNet b1.58) checkpoints.

    bitpack.open_model(path)                        -> the canonical model (tensors load lazily)
    bitpack.convert(src, "i2_s", ConvertOptions())  -> report dict
    bitpack.inspect(path)                           -> report dict
    bitpack.verify(reference, candidate)            -> report dict
    bitpack.codecs.get_codec(name, **params)        -> a codec

The API is the top layer below the command line: names resolve lazily (PEP 562), so
``import bitpack`` or ``bitpack.codecs`` does not load the pipelines, and nothing below
this package imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# API name -> the module that defines it
_API = {
    "ConvertOptions": "bitpack.pipelines.convert",
    "convert": "bitpack.pipelines.convert",
    "open_model": "bitpack.pipelines.open",
    "inspect": "bitpack.pipelines.inspect",
    "verify": "bitpack.pipelines.verify",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'bitpack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
