"""A tokenizer rebuilt from a GGUF file's own vocabulary (``tokenizer.ggml.*`` keys,
spec/gguf.md §7), so ``run --prompt`` works on a GGUF without the HF directory it came from.

The keys are the ones models/tokenizer.py writes: ``gpt2`` (byte-level BPE: ``tokens`` in
GPT-2's byte-to-unicode alphabet and ``merges`` as "a b" strings) with pre-tokenizer ``gpt-2``
or ``llama-bpe`` (the split regexes tokenizer.py recognises), and a BOS added when
``add_bos_token`` says so, as llama.cpp does. They run through Hugging Face's ``tokenizers``,
so the ids equal those of the tokenizer.json the GGUF was made from. Other tokenizer models
(SentencePiece ``llama``) are refused by name rather than approximated.
"""

from __future__ import annotations

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
    """A ``tokenizers.Tokenizer`` equal to the one the GGUF's keys describe, or a one-line refusal."""
    model = _value(kv, "tokenizer.ggml.model")
    if model is None:
        raise BitpackError(f"{where} carries no tokenizer (no tokenizer.ggml.model); pass token ids")
    if model != "gpt2":
        raise BitpackError(f"{where}: tokenizer.ggml.model {model!r} is not one bitpack rebuilds from GGUF keys "
                           "(byte-level BPE 'gpt2' only); use the HF model directory, or pass token ids")
    try:
        from tokenizers import (
            Regex,
            Tokenizer,
            decoders,
            models,
            pre_tokenizers,
            processors,
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
    tokenizer.add_special_tokens([t for t, k in zip(tokens, types) if int(k) in (3, 4)])
    bos = _value(kv, "tokenizer.ggml.bos_token_id")
    if _value(kv, "tokenizer.ggml.add_bos_token", False) and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", special_tokens=[(tokens[bos], int(bos))])
    return tokenizer
