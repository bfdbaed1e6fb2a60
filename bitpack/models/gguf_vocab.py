"""A tokenizer rebuilt from a GGUF file's own vocabulary (``tokenizer.ggml.*`` keys,
spec/gguf.md §7), so ``run --prompt`` works on a GGUF without the HF directory it came from.

The keys are the ones models/tokenizer.py writes: ``gpt2`` (byte-level BPE: ``tokens`` in
GPT-2's byte-to-unicode alphabet and ``merges`` as "a b" strings) with pre-tokenizer ``gpt-2``
or ``llama-bpe`` (the split regexes tokenizer.py recognises), and a BOS added when
``add_bos_token`` says so, as llama.cpp does. They run through Hugging Face's ``tokenizers``,
so the ids equal those of the tokenizer.json the GGUF was made from.

``llama`` (SentencePiece: ``tokens``, ``scores``, ``token_type``) is rebuilt as the
SentencePiece model it was read from: a BPE ``ModelProto`` (llama.cpp's SPM tokenizer merges
the adjacent pair whose merged piece scores highest, which is SentencePiece's BPE encoding),
byte fallback when the vocabulary has ``<0xXX>`` pieces, whitespace escaped to U+2581 and not
collapsed, a leading space as ``add_space_prefix`` says (llama.cpp's default: on). sentencepiece
runs it. Other tokenizer models are refused by name rather than approximated.

The same rebuilt tokenizers become an HF target's tokenizer files (``hf_tokenizer_files``), so
a GGUF converted to an HF directory loads in transformers with the ids the GGUF gives.
"""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace
from typing import Any

from ..errors import BitpackError
from .tokenizer import (
    LLAMA3_PATTERN,  # the split regex tokenizer.py writes as "llama-bpe"
)


def _value(kv: dict[str, Any], key: str, default: Any = None) -> Any:
    """A key's value; the reader keeps (value, type) pairs."""
    entry = kv.get(key)
    if entry is None:
        return default
    return entry[0] if isinstance(entry, tuple) else entry


def gguf_tokenizer(kv: dict[str, Any], where: str) -> Any:
    """A tokenizer equal to the one the GGUF's keys describe (``encode(text).ids`` and
    ``decode(ids)``, as a ``tokenizers.Tokenizer`` has), or a one-line refusal."""
    model = _model(kv, where)
    if model == "llama":
        try:
            import sentencepiece
        except ImportError as err:
            raise BitpackError(f"tokenizing for {where} needs the sentencepiece package ({err})") from None
        processor = sentencepiece.SentencePieceProcessor(model_proto=spm_model_proto(kv, where))
        bos = _value(kv, "tokenizer.ggml.bos_token_id")
        add_bos = bool(_value(kv, "tokenizer.ggml.add_bos_token", True))  # llama.cpp's SPM default: add BOS
        return SentencePieceTokenizer(processor, int(bos) if add_bos and bos is not None else None)
    return _bpe_tokenizer(kv, where)


class SentencePieceTokenizer:
    """sentencepiece behind the two calls bitpack makes of a tokenizers.Tokenizer; ``bos``, when
    given, is prepended (sentencepiece itself adds none)."""

    def __init__(self, processor: Any, bos: int | None = None) -> None:
        self.processor = processor
        self.bos = bos

    def encode(self, text: str) -> Any:
        ids = [int(i) for i in self.processor.encode(text)]
        return SimpleNamespace(ids=([self.bos] if self.bos is not None else []) + ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.processor.id_to_piece(int(i)).replace("\u2581", " ") for i in ids)


# The tokenizer models bitpack rebuilds; anything else is refused by name.
MODELS = ("gpt2", "llama")


def _model(kv: dict[str, Any], where: str) -> str:
    model = _value(kv, "tokenizer.ggml.model")
    if model is None:
        raise BitpackError(f"{where} carries no tokenizer (no tokenizer.ggml.model); pass token ids")
    if model not in MODELS:
        raise BitpackError(f"{where}: tokenizer.ggml.model {model!r} is not one bitpack rebuilds from GGUF keys "
                           f"({', '.join(MODELS)}); use the HF model directory, or pass token ids")
    if not _value(kv, "tokenizer.ggml.tokens"):
        raise BitpackError(f"{where}: the {model} tokenizer has no tokens; it cannot tokenize")
    return model


def _bpe_tokenizer(kv: dict[str, Any], where: str) -> Any:
    try:
        from tokenizers import (
            Regex,
            Tokenizer,
            decoders,
            models,
            pre_tokenizers,
        )
    except ImportError as err:
        raise BitpackError(f"tokenizing for {where} needs the tokenizers package ({err})") from None
    tokens = [str(t) for t in _value(kv, "tokenizer.ggml.tokens", [])]
    merges = [tuple(m.split(" ", 1)) for m in _value(kv, "tokenizer.ggml.merges", [])]
    if not tokens or not merges:
        raise BitpackError(f"{where}: the gpt2 tokenizer has no tokens or no merges; it cannot tokenize")
    types = list(_value(kv, "tokenizer.ggml.token_type", [1] * len(tokens)))
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    pre = _value(kv, "tokenizer.ggml.pre", "default")
    if pre == "llama-bpe":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:  # "gpt-2", and "default", which llama.cpp also splits like GPT-2
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    # control and user-defined tokens (types 3, 4) are matched whole, as llama.cpp does
    tokenizer.add_special_tokens([t for t, k in zip(tokens, types) if int(k) in (CONTROL, USER_DEFINED)])
    _add_bos(tokenizer, kv, tokens, default=False)
    return tokenizer


def _add_bos(tokenizer: Any, kv: dict[str, Any], tokens: list[str], *, default: bool) -> None:
    """A post-processor prepending BOS when ``add_bos_token`` says so (``default`` when the key is
    absent: llama.cpp adds BOS for SPM vocabularies, not for BPE ones)."""
    from tokenizers import processors

    bos = _value(kv, "tokenizer.ggml.bos_token_id")
    if _value(kv, "tokenizer.ggml.add_bos_token", default) and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], int(bos))])


# gguf TokenType (gguf-py constants; sentencepiece_model.proto uses the same numbers)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def spm_model_proto(kv: dict[str, Any], where: str) -> bytes:
    """The serialized SentencePiece ``ModelProto`` (sentencepiece_model.proto) of a ``llama``
    vocabulary: every piece with its score and type, and the specs llama.cpp's SPM tokenizer
    implies (see the module docstring). Written field by field: protobuf is not a dependency."""
    tokens = [str(t) for t in _value(kv, "tokenizer.ggml.tokens", [])]
    scores = [float(x) for x in _value(kv, "tokenizer.ggml.scores", [0.0] * len(tokens))]
    types = [int(x) for x in _value(kv, "tokenizer.ggml.token_type", [NORMAL] * len(tokens))]
    if not (len(tokens) == len(scores) == len(types)):
        raise BitpackError(f"{where}: tokenizer.ggml.tokens, scores and token_type differ in length "
                           f"({len(tokens)}, {len(scores)}, {len(types)})")
    if UNKNOWN not in types:  # sentencepiece refuses a model without one
        raise BitpackError(f"{where}: the llama (SentencePiece) vocabulary has no unknown token (type 2)")
    out = bytearray()
    for piece, score, typ in zip(tokens, scores, types):
        if not 1 <= typ <= BYTE:
            raise BitpackError(f"{where}: token {piece!r} has type {typ}; SentencePiece types are 1-6")
        out += _pb_bytes(1, _pb_bytes(1, piece.encode()) + _pb_float(2, score) + _pb_varint(3, typ))

    def special(name: str) -> int:
        value = _value(kv, f"tokenizer.ggml.{name}_token_id")
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else -1

    ids = {"unk": types.index(UNKNOWN), "bos": special("bos"), "eos": special("eos"), "pad": special("padding")}
    trainer = _pb_varint(3, 2) + _pb_varint(4, len(tokens)) + _pb_varint(35, int(BYTE in types))
    for field, name in zip((40, 41, 42, 43), ("unk", "bos", "eos", "pad")):  # unk_id, bos_id, eos_id, pad_id
        trainer += _pb_varint(field, ids[name])
    for field, name in zip((45, 46, 47, 48), ("unk", "bos", "eos", "pad")):  # their pieces
        if ids[name] >= 0:
            trainer += _pb_bytes(field, tokens[ids[name]].encode())
    # name, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces: proto2 defaults the last
    # three to true, so each is written explicitly
    normalizer = (_pb_bytes(1, b"identity") + _pb_varint(3, int(bool(_value(kv, "tokenizer.ggml.add_space_prefix",
                                                                               True))))
                  + _pb_varint(4, 0) + _pb_varint(5, 1))
    return bytes(out + _pb_bytes(2, trainer) + _pb_bytes(3, normalizer))


def _pb_key_varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int32 is its 64-bit two's complement, ten bytes
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _pb_varint(field: int, value: int) -> bytes:
    return _pb_key_varint(field << 3) + _pb_key_varint(value)


def _pb_bytes(field: int, value: bytes) -> bytes:
    return _pb_key_varint(field << 3 | 2) + _pb_key_varint(len(value)) + value


def _pb_float(field: int, value: float) -> bytes:
    return _pb_key_varint(field << 3 | 5) + struct.pack("<f", value)
