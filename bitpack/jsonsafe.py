"""JSON from files bitpack did not write, parsed with bounded work.

Python's json recurses once per nesting level and raises RecursionError (or, with a raised
limit, overflows the C stack) on a document like ``[[[[...]]]]``. Every JSON a user hands to
bitpack (config.json, tokenizer files, GGUF string metadata, safetensors headers and
indexes) goes through :func:`loads`, which measures the nesting depth first, in one
iterative pass, and refuses a document nested deeper than any real one.

Bottom layer: imports nothing from bitpack but its errors, so containers/ and models/ can
both use it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from .errors import BitpackError

MAX_DEPTH = 64  # real configs and tokenizers nest fewer than 10 levels

# Strings (with their escapes) and the brackets outside them; everything else is skipped.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings do not count)."""
    level = deepest = 0
    for match in _TOKENS.finditer(text):
        ch = match.group()[0]
        if ch in "[{":
            level += 1
            if level > deepest:
                deepest = level
        elif ch in "]}":
            level -= 1
    return deepest


def check_depth(text: str, where: str, *, max_depth: int = MAX_DEPTH) -> str:
    """``text`` unchanged, or a :class:`BitpackError` when it nests deeper than ``max_depth``
    (for parsers that need their own hooks and messages)."""
    found = depth(text)
    if found > max_depth:
        raise BitpackError(f"{where}: JSON nested {found} levels deep; bitpack reads at most {max_depth}")
    return text


def loads(text: str | bytes, where: str, *, max_depth: int = MAX_DEPTH,
          object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """``json.loads`` that raises one :class:`BitpackError` naming ``where`` for anything that is
    not JSON, or is nested deeper than ``max_depth``."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise BitpackError(f"{where}: not UTF-8 text ({err})") from None
    check_depth(text, where, max_depth=max_depth)
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except (ValueError, RecursionError) as err:
        raise BitpackError(f"{where}: not valid JSON ({err})") from None


def load_file(path, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in file ``path``."""
    try:
        data = open(path, "rb").read()
    except OSError as err:
        raise BitpackError(f"{path}: cannot read it ({err})") from None
    return loads(data, str(path), max_depth=max_depth)
