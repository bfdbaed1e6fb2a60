"""Text to token ids with a model's own tokenizer files (``bitpack run --prompt``, BitStack
calibration text).

* ``tokenizer.json`` runs through Hugging Face's ``tokenizers`` (the library that defines
  that format). Special tokens are added exactly as the file's post-processor says: a
  Llama-3-style template prepends BOS, a file without a post-processor adds nothing.
* ``tokenizer.model`` (SentencePiece: LLaMA-2, 1bitLLM) runs through ``sentencepiece``,
  which adds no BOS (transformers' LlamaTokenizer adds it from tokenizer_config.json's
  ``add_bos_token``; bitpack does not).
* A GGUF source's vocabulary (``tokenizer.ggml.*``) is rebuilt (models/gguf_vocab.py): ``gpt2``
  as a ``tokenizers`` tokenizer, ``llama`` as a SentencePiece model; BOS follows its
  ``add_bos_token``, as llama.cpp's does.
"""

from __future__ import annotations

from typing import Any

from ..errors import BitpackError
from ..jsonsafe import load_file
from .gguf_vocab import SentencePieceTokenizer
from .model import Model


def encode_text(model: Model, text: str) -> list[int]:
    """Token ids of ``text`` under ``model``'s tokenizer (see the module docstring for BOS)."""
    return list(_tokenizer(model).encode(text).ids)


def token_texts(model: Model, ids: list[int]) -> list[str] | None:
    """The text of each id under ``model``'s tokenizer; None when the model carries none."""
    try:
        tokenizer = _tokenizer(model)
    except BitpackError:
        return None
    return [tokenizer.decode([i], skip_special_tokens=False) for i in ids]


def decode_text(model: Model, ids: list[int]) -> str | None:
    """``ids`` as one text under ``model``'s tokenizer (bytes split across ids rejoined, special
    tokens shown); None when the model carries none."""
    try:
        tokenizer = _tokenizer(model)
    except BitpackError:
        return None
    return tokenizer.decode(ids, skip_special_tokens=False)


def _tokenizer(model: Model) -> Any:
    folder = model.tokenizer_dir
    if folder is None and model.tokenizer_kv:
        from .gguf_vocab import gguf_tokenizer

        return gguf_tokenizer(model.tokenizer_kv, str(model.source))
    if folder is None:
        raise BitpackError(f"{model.source} has no tokenizer files (tokenizer.json or tokenizer.model); bitpack "
                           "tokenizes text only with them. Use the HF model directory, or pass token ids")
    if (folder / "tokenizer.json").is_file():
        try:
            from tokenizers import Tokenizer
        except ImportError as err:  # a dependency, but say so plainly if it is missing
            raise BitpackError(f"reading {folder / 'tokenizer.json'} needs the tokenizers package ({err})") from None
        load_file(folder / "tokenizer.json")  # bounded nesting first
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as err:  # tokenizers raises its own Exception type for malformed files
            raise BitpackError(f"{folder / 'tokenizer.json'}: cannot load the tokenizer ({err})") from None
        return tokenizer
    if (folder / "tokenizer.model").is_file():
        try:
            import sentencepiece
        except ImportError as err:
            raise BitpackError(f"reading {folder / 'tokenizer.model'} needs the sentencepiece package ({err})") from None
        try:
            processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        except Exception as err:  # sentencepiece raises RuntimeError, OSError or its own for damaged files
            raise BitpackError(f"{folder / 'tokenizer.model'}: cannot load the tokenizer ({err})") from None
        return SentencePieceTokenizer(processor)  # no BOS: see the module docstring
    raise BitpackError(f"{folder}: neither tokenizer.json nor tokenizer.model; bitpack cannot tokenize text "
                       "for this model. Pass token ids instead")
