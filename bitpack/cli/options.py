"""Option types of the command line: choices built from the tables that own each fact, and the
small text formats (KEY=INT pairs, token lists) parsed into what the API takes.

A choice is refused by click as a usage error (exit 2, one line) before any work starts; the
pipelines keep their own checks as the API's guard.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Optional

from ..bitstack.order import ORDER_ALIASES, ORDERS
from ..bitstack.svd import SVD_METHODS
from ..containers.gguf_types import DIALECTS
from ..errors import BitpackError
from ..executor import NUMERICS
from ..models.arch import ARCHITECTURES
from ..models.conventions import LINEAR_CLASSES
from ..models.gguf_target import EMBED_DTYPES
from ..models.hf_target import SCALE_DTYPES


def choice(name: str, values: Iterable[str]) -> type[Enum]:
    """A str Enum of ``values``: typer lists them in --help and refuses anything else."""
    return Enum(name, [(v, v) for v in values], type=str)


Dialect = choice("Dialect", DIALECTS)  # what a source may be read as
Architecture = choice("Architecture", ARCHITECTURES)
WrittenDialect = choice("WrittenDialect", [d for d, spec in DIALECTS.items() if spec.writable])
EmbedDtype = choice("EmbedDtype", EMBED_DTYPES)
ScaleDtype = choice("ScaleDtype", SCALE_DTYPES)
LinearClass = choice("LinearClass", LINEAR_CLASSES)
Numerics = choice("Numerics", NUMERICS)
Order = choice("Order", (*ORDERS, *ORDER_ALIASES))
Svd = choice("Svd", SVD_METHODS)


class ScaleConvention(str, Enum):
    """What a packed source's weight_scale means (a choice, so click refuses anything else)."""

    multiply = "multiply"
    divide = "divide"


def value(option: Optional[Enum]) -> Optional[str]:
    """The string a choice stands for (None stays None), as the API takes it."""
    return None if option is None else option.value


def params_option(text: Optional[str], option: str = "--params", *, words: bool = True) -> dict[str, int | str]:
    """'BM=256,BK=96,bm=32' -> {'BM': 256, ...}; with ``words``, a value that is not a number
    stays a string ('scale_mode=separate'): the codec checks it against its own choices."""
    if not text:
        return {}
    params: dict[str, int | str] = {}
    example = "BM=256,BK=96,bm=32 or scale_mode=separate" if words else "BM=256,BK=96,bm=32"
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        raw = raw.strip()
        if not sep or not key.strip() or not (raw.isdigit() or (words and raw.isidentifier())):
            kind = "KEY=VALUE" if words else "KEY=INT"
            raise BitpackError(f"{option} expects {kind} pairs like {example}; got {item!r}")
        params[key.strip()] = int(raw) if raw.isdigit() else raw
    return params


def tiles_option(text: Optional[str], option: str = "--tile-params") -> dict:
    """Tiles of a foreign TL file: KEY=INT pairs, or a kernel_config.ini path (tiles per shape)."""
    if text and "=" not in text:
        from ..codecs.tiles import read_kernel_config

        path = Path(text)
        if not path.is_file():
            raise BitpackError(f"{option}: {text} is neither BM=..,BK=..,bm=.. nor a kernel_config.ini file")
        return read_kernel_config(path.read_text())
    return params_option(text, option, words=False)  # tiles are numbers only


def token_list(text: Optional[str]) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        tokens = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise BitpackError(f"--tokens expects comma-separated integers, got {text!r}") from None
    if not tokens:
        raise BitpackError("--tokens is empty")
    return tokens
