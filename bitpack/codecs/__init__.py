"""Ternary weight codecs: pure functions between the canonical ternary tensor and bytes.

    >>> from bitpack.codecs import get_codec
    >>> codec = get_codec("tq2_0")
    >>> buf = codec.encode(codes, scale)          # exactly codec.nbytes(codes.shape) bytes
    >>> codes, scale = codec.decode(buf, codes.shape)

See formats/README.md for the layouts.
"""

from ..errors import (
    CodecError,
    CorruptDataError,
    ScaleError,
    ShapeError,
    UnknownCodecError,
)
from .base import Codec, GGUFCodec, SafetensorsCodec
from .registry import codec_class, get_codec, list_codecs

__all__ = [
    "Codec",
    "CodecError",
    "CorruptDataError",
    "GGUFCodec",
    "SafetensorsCodec",
    "ScaleError",
    "ShapeError",
    "UnknownCodecError",
    "codec_class",
    "get_codec",
    "list_codecs",
]
