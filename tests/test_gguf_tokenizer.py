"""A GGUF's own vocabulary speaks text: ``run --prompt`` on a SentencePiece (``llama``) GGUF, and
GGUF -> HF targets that carry a tokenizer transformers loads (the open issue, "a newcomer's
first hour")."""

import json
from pathlib import Path

import pytest
from cli_runner import bitpack

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
# spaces kept as typed, a newline, a character outside the vocabulary (byte fallback) and an emoji
TEXT = "the house where  the river\n bends, naïve 😀"


def _gguf(tmp_path, fixture, to="i2_s"):
    out = tmp_path / f"{fixture}.gguf"
    made = bitpack("convert", MODELS / fixture, "--to", to, "-o", out)
    assert made.returncode == 0, made.stderr
    return out


def _run_ids(model, text=TEXT):
    done = bitpack("run", model, "--prompt", text, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["tokens"]


def test_run_prompt_on_a_sentencepiece_gguf_gives_its_sources_ids(tmp_path):
    import sentencepiece

    source = MODELS / "bitnet-f32-sharded"
    sp = sentencepiece.SentencePieceProcessor(model_file=str(source / "tokenizer.model"))
    config = json.loads((source / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is True  # what transformers' LlamaTokenizer adds, and the GGUF says
    expected = [sp.bos_id()] + sp.encode(TEXT)
    assert sp.id_to_piece(expected[-1]).startswith("<0x")  # the emoji takes the byte-fallback path
    assert _run_ids(_gguf(tmp_path, "bitnet-f32-sharded")) == expected
