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


def _source_ids(fixture, text=TEXT):
    """The ids the HF fixture's own tokenizer gives, BOS as its tokenizer files say."""
    folder = MODELS / fixture
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids
    import sentencepiece  # LlamaTokenizer: sentencepiece's pieces after the BOS add_bos_token asks for

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert json.loads((folder / "tokenizer_config.json").read_text())["add_bos_token"] is True
    return [sp.bos_id()] + sp.encode(text)


def _tokenizer_keys(path):
    from bitpack.pipelines.open import open_model

    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, (v, _) in open_model(path).tokenizer_kv.items()}


# every ternary fixture, each HF target at least once
ROUND_TRIPS = [("b158-packed", "hf_packed"), ("b158-bf16", "int8"), ("b158-k384-bf16", "i2_packed"),
               ("llama-packed", "hf_packed"), ("bitnet-f32-sharded", "int8"), ("bitnet-f32-sharded", "i2_packed")]


def _hf_from_gguf(tmp_path, fixture, to):
    gguf = _gguf(tmp_path, fixture)
    out = tmp_path / f"{fixture}-{to}"
    made = bitpack("convert", gguf, "--to", to, "-o", out)
    assert made.returncode == 0, made.stderr
    assert "no tokenizer files" not in made.stderr
    return gguf, out


@pytest.mark.parametrize("fixture, to", ROUND_TRIPS)
def test_an_hf_target_of_a_gguf_carries_the_tokenizer_the_gguf_has(tmp_path, fixture, to):
    gguf, out = _hf_from_gguf(tmp_path, fixture, to)
    config = json.loads((out / "tokenizer_config.json").read_text())
    if (MODELS / fixture / "tokenizer.model").is_file():
        assert (out / "tokenizer.model").is_file() and config["bos_token"] == "<s>"
    else:
        assert not (out / "tokenizer.model").exists() and config["bos_token"] == "<|begin_of_text|>"
    expected = _source_ids(fixture)
    assert _run_ids(gguf) == expected and _run_ids(out) == expected
    # and back: the GGUF made from the HF output carries exactly the first GGUF's tokenizer keys
    again = tmp_path / "again.gguf"
    assert bitpack("convert", out, "--to", "i2_s", "-o", again).returncode == 0
    assert _tokenizer_keys(again) == _tokenizer_keys(gguf)


@pytest.mark.oracle
@pytest.mark.parametrize("fixture, to", ROUND_TRIPS[:1] + ROUND_TRIPS[3:5])
def test_transformers_loads_the_tokenizer_of_an_hf_target_made_from_a_gguf(tmp_path, fixture, to):
    from oracles import require

    transformers = require("transformers")
    _, out = _hf_from_gguf(tmp_path, fixture, to)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer(TEXT).input_ids
    assert ids == _source_ids(fixture)
    assert tokenizer.decode(ids, skip_special_tokens=True) == TEXT
    assert tokenizer.bos_token_id == ids[0] and tokenizer.eos_token is not None
