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
    # The trailing control and user-defined tokens (a Llama-3 vocabulary's <|begin_of_text|> ...)
    # are added tokens, outside the BPE vocabulary, as in the tokenizer.json they came from: gguf-py
    # (models/tokenizer.py) gives type CONTROL only to those, so an HF target reads back the same.
    merged = {a + b for a, b in merges}
    base = len(tokens)
    while base and int(types[base - 1]) in (CONTROL, USER_DEFINED) and tokens[base - 1] not in merged:
        base -= 1
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens[:base])}, merges=merges))
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
        # gguf-py writes add_sep_token only for a source whose template joined a pair with a
        # token between (Llama 3: each sequence after its own BOS); that pair is written back, so
        # the HF output reads back into the same keys
        pair = f"{tokens[bos]} $A {tokens[bos]}:1 $B:1" if _value(kv, "tokenizer.ggml.add_sep_token") is not None \
            else None
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=pair, special_tokens=[(tokens[bos], int(bos))])


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


def hf_tokenizer_files(kv: dict[str, Any], where: str) -> dict[str, bytes]:
    """The HF tokenizer files (name -> contents) of the GGUF's vocabulary, for an HF target.

    ``gpt2``: the ``tokenizer.json`` of the tokenizer ``run`` uses. ``llama``: the rebuilt
    ``tokenizer.model`` -- what the source had, and what reads back into the same GGUF keys --
    plus the ``tokenizer.json`` transformers' Llama converter makes of it (BPE with byte fallback,
    merges from the scores), which transformers loads without sentencepiece or protobuf. Both
    with a ``tokenizer_config.json`` naming the special tokens, BOS/EOS addition and class."""
    model = _model(kv, where)
    tokens = [str(t) for t in _value(kv, "tokenizer.ggml.tokens")]
    files: dict[str, bytes] = {}
    if model == "llama":
        files["tokenizer.model"] = spm_model_proto(kv, where)
        tokenizer = _spm_as_bpe(kv, tokens)
    else:
        tokenizer = _bpe_tokenizer(kv, where)
    files["tokenizer.json"] = tokenizer.to_str(pretty=True).encode("utf-8")
    config: dict[str, Any] = {
        "add_bos_token": bool(_value(kv, "tokenizer.ggml.add_bos_token", model == "llama")),
        "add_eos_token": bool(_value(kv, "tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        # the generic class loads tokenizer.json as written; a named one (LlamaTokenizer) would
        # rebuild its own pipeline around the vocabulary instead
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    for name, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token_id = _value(kv, f"tokenizer.ggml.{key}_token_id")
        if token_id is not None and 0 <= int(token_id) < len(tokens):
            config[f"{name}_token"] = tokens[int(token_id)]
    template = _value(kv, "tokenizer.chat_template")
    if isinstance(template, str) and template:
        config["chat_template"] = template
    files["tokenizer_config.json"] = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return files


def _spm_as_bpe(kv: dict[str, Any], tokens: list[str]) -> Any:
    """A ``llama`` vocabulary as a ``tokenizers`` BPE with byte fallback, built as transformers'
    SentencePiece converter builds it (convert_slow_tokenizer.generate_merges: every split of a
    piece into two pieces is a merge, ranked by the merged piece's score)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    scores = [float(x) for x in _value(kv, "tokenizer.ggml.scores", [0.0] * len(tokens))]
    types = [int(x) for x in _value(kv, "tokenizer.ggml.token_type", [NORMAL] * len(tokens))]
    vocab = {t: i for i, t in enumerate(tokens)}
    mergeable = {t for t, k in zip(tokens, types) if k in (NORMAL, USER_DEFINED)}
    ranked = []
    for piece in mergeable:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                ranked.append((-scores[vocab[piece]], vocab[piece], vocab[left], vocab[right], left, right))
    merges = [(left, right) for *_, left, right in sorted(ranked)]
    unk = tokens[types.index(UNKNOWN)] if UNKNOWN in types else None
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                                     byte_fallback=BYTE in types))
    prefix = bool(_value(kv, "tokenizer.ggml.add_space_prefix", True))
    # SentencePiece's add_dummy_prefix puts one U+2581 before the text, not before every piece
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", split=False,
                                                       prepend_scheme="first" if prefix else "never")
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    tokenizer.add_tokens([AddedToken(t, special=k != USER_DEFINED, normalized=False)
                          for t, k in zip(tokens, types) if k in (UNKNOWN, CONTROL, USER_DEFINED)])
    _add_bos(tokenizer, kv, tokens, default=True)
    return tokenizer
