"""The one table of codecs: name -> implementing class, imported on first use.

Adding a codec is one module and one line here. Outside packages can add theirs
through the ``bitpack.codecs`` entry-point group (name = "module:Class").
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from ..errors import UnknownCodecError
from .base import Codec

CODECS: dict[str, str] = {
    "int8": "bitpack.codecs.int8:Int8",
    "i2_packed": "bitpack.codecs.i2_packed:I2Packed",
    "hf_packed": "bitpack.codecs.hf_packed:HFPacked",
    "i2_s": "bitpack.codecs.i2_s:I2S",
    "tq2_0": "bitpack.codecs.tq2_0:TQ2_0",
    "tq1_0": "bitpack.codecs.tq1_0:TQ1_0",
    "q2_0": "bitpack.codecs.q2_0:Q2_0",
    "q1_0": "bitpack.codecs.q1_0:Q1_0",
    "pq2_0": "bitpack.codecs.pq2_0:PQ2_0",
    "ptq1_0": "bitpack.codecs.ptq1_0:PTQ1_0",
    "tl1": "bitpack.codecs.tl1:TL1",
    "tl2": "bitpack.codecs.tl2:TL2",
    "iq1_bn": "bitpack.codecs.iq1_bn:IQ1_BN",
    "iq2_bn": "bitpack.codecs.iq2_bn:IQ2_BN",
    "iq2_bn_r4": "bitpack.codecs.iq2_bn_r4:IQ2_BN_R4",
    "unpacked": "bitpack.codecs.unpacked:Unpacked",
    "bitstack": "bitpack.codecs.bitstack:BitStack",
}
ALIASES: dict[str, str] = {"i2_naive": "int8"}

_loaded: dict[str, type[Codec]] = {}


@functools.cache
def _external() -> dict[str, str]:
    # Scanning the installed distributions costs milliseconds, and codec names are looked up
    # per tensor and per matmul: read the entry points once per process (installing a plugin
    # takes effect in the next run, as with any Python entry point).
    return {ep.name: ep.value for ep in entry_points(group="bitpack.codecs")}


def codec_class(name: str) -> type[Codec]:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _loaded:
        target = CODECS.get(key) or _external().get(key)
        if target is None:
            known = ", ".join(list_codecs())
            raise UnknownCodecError(f"unknown codec {name!r}; known codecs: {known}")
        module, _, attr = target.partition(":")
        _loaded[key] = getattr(importlib.import_module(module), attr)
    return _loaded[key]


def get_codec(name: str | dict[str, Any], **params: Any) -> Codec:
    """A codec by name with its parameters, or from a ``get_config()`` dict."""
    if isinstance(name, dict):
        params = {k: v for k, v in name.items() if k != "id"} | params
        name = name["id"]
    cls = codec_class(name)
    unknown = sorted(set(params) - set(cls.param_names))
    if unknown:
        allowed = ", ".join(cls.param_names) or "none"
        raise UnknownCodecError(f"{cls.name} has no parameter {', '.join(unknown)} (parameters: {allowed})")
    return cls(**params)


def list_codecs() -> list[str]:
    """Canonical names of every codec, built-in first."""
    return list(CODECS) + sorted(set(_external()) - set(CODECS))
