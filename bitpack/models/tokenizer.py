"""Tokenizer carry-over into GGUF ``tokenizer.*`` keys (spec/gguf.md §7), with gguf-py's
vocab helpers doing the reading.

The tokenizer model follows the files present: a byte-level BPE ``tokenizer.json`` is
``gpt2``, a ``tokenizer.model`` is SentencePiece ``llama``; never SentencePiece for a BPE
vocabulary (the upstream converters' bug, microsoft/BitNet PR #508). ``tokenizer.ggml.pre``
is always written: recognised pre-tokenizers by their split pattern (GPT-2's ByteLevel
one by its settings), else ``default`` with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import BitpackError
from ..jsonsafe import load_file

# A GGUF KV triple: (key, value, value type name); array types are "[elem]".
KV = tuple[str, Any, str]

# Split regexes of known pre-tokenizers -> llama.cpp's pre-tokenizer name.
LLAMA3_PATTERN = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
# Qwen2 / Qwen3: as Llama 3's but digits one at a time (llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2)
QWEN2_PATTERN = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
KNOWN_PRE = {LLAMA3_PATTERN: "llama-bpe", QWEN2_PATTERN: "qwen2"}
# A lone ByteLevel pre-tokenizer with use_regex (tokenizers' default) splits with GPT-2's own
# regex, exactly the one llama.cpp runs for pre "gpt-2" (llama-vocab.cpp,
# LLAMA_VOCAB_PRE_TYPE_GPT2); convert_hf_to_gguf.py writes "gpt-2" for openai-community/gpt2.
# add_prefix_space must be off, as in GPT-2: llama.cpp adds no leading space. A missing key
# means tokenizers' default (use_regex and add_prefix_space both true).
GPT2_PRE = "gpt-2"
PADDING_TYPE = 5  # gguf TokenType.UNUSED


# The JSON files gguf-py and tokenizers read; each is parsed once here first, with bounded
# nesting, and must be a JSON object.
JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "added_tokens.json",
              "special_tokens_map.json")

# tokenizer_kv results of folders opened in this process, keyed by what the files are now:
# a source's tokenizer is read (and so checked) when it is opened, and its GGUF keys reused.
_CACHE: dict[tuple[Any, ...], tuple[list[KV], list[str]]] = {}


def check_tokenizer(folder: Path, vocab_size: int) -> None:
    """Read the tokenizer files in ``folder`` now, so that damage is refused when the model is
    opened -- before any weight is processed or output written -- not half-way through."""
    tokenizer_kv(folder, vocab_size, require=False)


def tokenizer_kv(folder: Path, vocab_size: int, *, require: bool = True) -> tuple[list[KV], list[str]]:
    """GGUF tokenizer keys for the HF tokenizer files in ``folder``, plus warnings. Any damage
    in the files is one BitpackError naming the folder. ``require=False``: a folder with no
    tokenizer bitpack can carry over gives no keys instead of an error."""
    names = [n for n in (*JSON_FILES, "tokenizer.model", "merges.txt") if (folder / n).is_file()]
    key = (str(Path(folder).resolve()), vocab_size, tuple((n, (folder / n).stat().st_mtime_ns,
                                                           (folder / n).stat().st_size) for n in names))
    if key not in _CACHE:
        try:
            _CACHE[key] = _tokenizer_kv(folder, vocab_size)
        except _NoTokenizer as err:
            if require:
                raise BitpackError(str(err)) from None
            return [], []
        except BitpackError:
            raise
        except Exception as err:  # gguf-py and sentencepiece raise anything on damaged files
            raise BitpackError(f"{folder}: cannot read the tokenizer ({type(err).__name__}: "
                               f"{str(err)[:200]})") from None
    kv, warnings = _CACHE[key]
    return list(kv), list(warnings)


class _NoTokenizer(Exception):
    pass


def _tokenizer_kv(folder: Path, vocab_size: int) -> tuple[list[KV], list[str]]:
    from gguf.vocab import BpeVocab, SentencePieceVocab, SpecialVocab

    for name in JSON_FILES:
        if (folder / name).is_file():
            data = load_file(folder / name)
            if not isinstance(data, dict):
                raise BitpackError(f"{folder / name}: top level is a JSON {type(data).__name__}, not an object")
    if vocab_size < 1:
        raise BitpackError(f"{folder}: vocab_size is {vocab_size}; a tokenizer needs at least one token")
    warnings: list[str] = []
    tokenizer_json = folder / "tokenizer.json"
    logging.getLogger("gguf").setLevel(logging.ERROR)  # gguf-py logs at INFO; bitpack reports itself
    try:
        if tokenizer_json.is_file() and _is_byte_level_bpe(tokenizer_json):
            vocab, model = BpeVocab(folder), "gpt2"
            pre, warning = _pre_tokenizer(tokenizer_json)
            if warning:
                warnings.append(warning)
        elif (folder / "tokenizer.model").is_file():
            vocab, model, pre = SentencePieceVocab(folder), "llama", "default"
        else:
            raise _NoTokenizer(f"{folder}: no tokenizer bitpack can carry over (a byte-level BPE "
                               "tokenizer.json or a SentencePiece tokenizer.model)")
        special = SpecialVocab(folder, load_merges=model == "gpt2", n_vocab=vocab_size)
    except ImportError as err:
        raise BitpackError(f"{folder}: reading tokenizer.model needs the sentencepiece package ({err})") from None

    tokens, scores, types = _token_arrays(folder, vocab, vocab_size)
    kv: list[KV] = [
        ("tokenizer.ggml.model", model, "string"),
        ("tokenizer.ggml.pre", pre, "string"),
        ("tokenizer.ggml.tokens", tokens, "[string]"),
        ("tokenizer.ggml.token_type", types, "[i32]"),
    ]
    if model == "llama":
        kv.append(("tokenizer.ggml.scores", scores, "[f32]"))
    return kv + _special_kv(folder, special, model), warnings


def _token_arrays(folder: Path, vocab: Any, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types, one per embedding row (rows past the tokenizer's end padded)."""
    tokens, scores, types = [], [], []
    if vocab.vocab_size > vocab_size:
        raise BitpackError(f"{folder}: the tokenizer has {vocab.vocab_size} tokens but vocab_size is {vocab_size}")
    for text, score, toktype in vocab.all_tokens():
        if not isinstance(text, (str, bytes)):
            raise BitpackError(f"{folder}: token {len(tokens)} is {repr(text)[:40]}; expected a string")
        tokens.append(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text)
        scores.append(float(score))
        types.append(int(toktype))
    if len(tokens) > vocab_size:
        raise BitpackError(f"{folder}: the tokenizer has {len(tokens)} tokens but vocab_size is {vocab_size}")
    for i in range(len(tokens), vocab_size):  # the embedding has rows past the tokenizer's end
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(PADDING_TYPE)
    return tokens, scores, types


def _special_kv(folder: Path, special: Any, model: str) -> list[KV]:
    """Merges, special token ids, add-token flags and the chat template."""
    kv: list[KV] = []
    if special.merges:
        if not all(isinstance(m, str) for m in special.merges):
            raise BitpackError(f"{folder}: the BPE merges are not all strings")
        kv.append(("tokenizer.ggml.merges", list(special.merges), "[string]"))
    elif model == "gpt2":
        raise BitpackError(f"{folder}: the BPE tokenizer has no merges; the GGUF would not tokenize")
    for typ, token_id in sorted(special.special_token_ids.items()):
        kv.append((f"tokenizer.ggml.{typ}_token_id", int(token_id), "u32"))
    for typ, value in sorted(special.add_special_token.items()):
        kv.append((f"tokenizer.ggml.add_{typ}_token", bool(value), "bool"))
    if special.chat_template:
        template = special.chat_template
        if not isinstance(template, str):  # a list of named templates: keep the default one
            if not isinstance(template, list) or not all(isinstance(t, dict) for t in template):
                raise BitpackError(f"{folder}: chat_template is {repr(template)[:40]}; expected a string "
                                   "or a list of named templates")
            template = next((t.get("template") for t in template
                             if isinstance(t, dict) and t.get("name") == "default"), None)
        if template is not None and not isinstance(template, str):
            raise BitpackError(f"{folder}: chat_template is {type(template).__name__}; expected a string")
        if template:
            kv.append(("tokenizer.chat_template", template, "string"))
    return kv


def _is_byte_level_bpe(path: Path) -> bool:
    data = load_file(path)
    model = data.get("model") or {}
    decoder = data.get("decoder") or {}
    if not isinstance(model, dict) or not isinstance(decoder, dict):
        raise BitpackError(f"{path}: 'model' and 'decoder' must be JSON objects")
    return model.get("type") == "BPE" and not model.get("byte_fallback") and decoder.get("type") == "ByteLevel"


def _pre_tokenizer(path: Path) -> tuple[str, str | None]:
    data = load_file(path)
    patterns = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, dict) and isinstance(pattern.get("Regex"), str):
                patterns.append(pattern["Regex"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    pre_tokenizer = data.get("pre_tokenizer")
    if (isinstance(pre_tokenizer, dict) and pre_tokenizer.get("type") == "ByteLevel"
            and pre_tokenizer.get("use_regex", True) is True and pre_tokenizer.get("add_prefix_space", True) is False):
        return GPT2_PRE, None
    walk(pre_tokenizer)
    for pattern in patterns:
        if pattern in KNOWN_PRE:
            return KNOWN_PRE[pattern], None
    return "default", (
        f"{path}: pre-tokenizer not recognised; wrote tokenizer.ggml.pre = 'default', which splits text "
        "like GPT-2 and may tokenize differently from the original"
    )
