"""A newcomer's first hour (the open issue): advice that works when followed, options that either
apply or are refused, outputs that never destroy what bitpack did not write, run that speaks text.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"


def test_encode_scale_advice_is_a_params_value_that_works(tmp_path):
    src = tmp_path / "t.npz"
    np.savez(src, codes=np.ones((4, 256), np.int8), scale=np.float32(0.1))  # 0.1 is not an fp16
    refused = bitpack("encode", src, "--to", "tq2_0", "-o", tmp_path / "w")
    assert refused.returncode == 2
    assert "--params scale_mode=separate" in refused.stderr
    followed = bitpack("encode", src, "--to", "tq2_0", "--params", "scale_mode=separate", "-o", tmp_path / "w")
    assert followed.returncode == 0, followed.stderr
    sidecar = json.loads((tmp_path / "w.json").read_text())
    assert sidecar["codec"]["scale_mode"] == "separate" and sidecar["scale"] == np.float32(0.1)


def test_verify_of_a_stack_without_threshold_says_it_only_measured(tmp_path):
    stack = tmp_path / "s"
    made = bitpack("convert", MODELS / "llama-f16", "--to", "bitstack", "--blocks", "1", "--rank", "1", "-o", stack)
    assert made.returncode == 0, made.stderr
    measured = bitpack("verify", MODELS / "llama-f16", stack, "--n-tokens", "4")
    assert measured.returncode == 0, measured.stderr
    assert "measured, no threshold" in measured.stdout and "within tolerance" not in measured.stdout
    assert "--max-kl" in measured.stdout  # how to make it a gate
    report = json.loads(bitpack("verify", MODELS / "llama-f16", stack, "--n-tokens", "4", "--json").stdout)
    assert report["verdict"] == "measured, no threshold" and report["kl"] > 0
    missed = bitpack("verify", MODELS / "llama-f16", stack, "--n-tokens", "4", "--max-kl", "0.000001",
                     "--min-top1", "0")
    assert missed.returncode == 1
    assert "exceeds --max-kl 1e-06" in missed.stderr and "--min-top1" not in missed.stderr
    converted = bitpack("convert", MODELS / "llama-f16", "--to", "bitstack", "--blocks", "1", "--rank", "1",
                        "-o", tmp_path / "t", "--verify", "--max-kl", "0.000001")
    assert converted.returncode == 1 and "exceeds --max-kl 1e-06" in converted.stderr


def test_save_logits_keeps_the_name_refuses_clobbering_and_directories(tmp_path):
    model = MODELS / "b158-packed"
    plain = bitpack("run", model, "--tokens", "1,2", "--save-logits", tmp_path / "mylogits")
    assert plain.returncode == 2 and "must end in .npy" in plain.stderr
    assert list(tmp_path.iterdir()) == []  # not renamed to mylogits.npy behind the user's back
    folder = tmp_path / "adir"
    folder.mkdir()
    assert bitpack("run", model, "--tokens", "1,2", "--save-logits", folder).returncode == 2
    assert list(tmp_path.iterdir()) == [folder]
    out = tmp_path / "l.npy"
    assert bitpack("run", model, "--tokens", "1,2", "--save-logits", out).returncode == 0
    first = np.load(out)
    assert first.shape[0] == 2 and first.dtype == np.float32
    again = bitpack("run", model, "--tokens", "3,4,5", "--save-logits", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr and np.load(out).shape[0] == 2
    replaced = bitpack("run", model, "--tokens", "3,4,5", "--save-logits", out, "--overwrite")
    assert replaced.returncode == 0 and np.load(out).shape[0] == 3


def test_save_logits_into_a_read_only_folder_is_one_line(tmp_path):
    # root writes through mode bits; /proc refuses every new file whoever asks
    folder = Path("/proc") if os.geteuid() == 0 else tmp_path / "ro"
    if folder != Path("/proc"):
        folder.mkdir()
        folder.chmod(0o555)
    try:
        done = bitpack("run", MODELS / "b158-packed", "--tokens", "1", "--save-logits", folder / "l.npy")
    finally:
        folder.chmod(0o755) if folder != Path("/proc") else None
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "l.npy" in done.stderr
    assert not (folder / "l.npy").exists()


def test_overwrite_replaces_only_a_directory_bitpack_wrote(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own work")
    kept = bitpack("convert", MODELS / "b158-packed", "--to", "int8", "-o", mine)
    assert kept.returncode == 2 and "--overwrite" in kept.stderr and "pass overwrite" not in kept.stderr
    refused = bitpack("convert", MODELS / "b158-packed", "--to", "int8", "-o", mine, "--overwrite")
    assert refused.returncode == 2 and "only a directory bitpack wrote" in refused.stderr
    assert (mine / "notes.txt").read_text() == "the user's own work"
    # bitpack's own output is replaced, with its receipt and without one (its metadata)
    ours = tmp_path / "ours"
    for receipt in ("--receipt", "--no-receipt", "--no-receipt"):
        done = bitpack("convert", MODELS / "b158-packed", "--to", "int8", "-o", ours, "--overwrite", receipt)
        assert done.returncode == 0, done.stderr
    assert (ours / "config.json").is_file()
    help_text = bitpack("convert", "--help").stdout
    assert "directory bitpack wrote" in " ".join(help_text.split())


@pytest.mark.parametrize("to, option, named", [
    ("int8", ("--dialect", "mainline"), "--dialect applies to gguf targets"),
    ("i2_s", ("--linear-class", "bitlinear"), "--linear-class applies to --to hf_packed"),
    ("int8", ("--scale-dtype", "bf16"), "--scale-dtype applies to --to hf_packed"),
    ("i2_s", ("--blocks", "4"), "--blocks applies to --to bitstack"),
    ("tq2_0", ("--svd", "full"), "--svd applies to --to bitstack"),
    ("bitstack", ("--embed-dtype", "f16"), "--embed-dtype applies to gguf targets"),
    ("hf_packed", ("--allow-scale-merge",), "--allow-scale-merge applies to gguf targets"),
])
def test_an_option_that_does_not_apply_is_refused_by_name(tmp_path, to, option, named):
    done = bitpack("convert", MODELS / "b158-packed", "--to", to, *option, "-o", tmp_path / "out")
    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert f"not --to {to}" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_options_that_apply_are_taken(tmp_path):
    done = bitpack("convert", MODELS / "b158-packed", "--to", "hf_packed", "--linear-class", "bitlinear",
                   "--scale-dtype", "f32", "-o", tmp_path / "hf")
    assert done.returncode == 0, done.stderr


def test_the_falcon3_fixture_opens_everywhere_without_a_convention_and_says_why(tmp_path):
    llama = MODELS / "llama-packed"
    looked = bitpack("inspect", llama)
    assert looked.returncode == 0, looked.stderr
    assert "quantization_config" in looked.stderr and "last one wins: bitlinear" in looked.stderr
    ran = bitpack("run", llama, "--tokens", "1,2,3")
    assert ran.returncode == 0 and "last one wins" in ran.stderr
    out = tmp_path / "l.gguf"
    assert bitpack("convert", llama, "--to", "i2_s", "-o", out).returncode == 0
    checked = bitpack("verify", llama, out, "--n-tokens", "4")
    assert checked.returncode == 0 and "identical" in checked.stdout and "last one wins" in checked.stderr
    # the override is accepted by every command that opens a model, and changes what is read
    for command in (("inspect", llama), ("run", llama, "--tokens", "1"), ("verify", llama, out, "--n-tokens", "4")):
        done = bitpack(*command, "--scale-convention", "multiply")
        assert "No such option" not in done.stderr and done.returncode in (0, 1), done.stderr
    assert bitpack("verify", llama, out, "--n-tokens", "4", "--scale-convention", "multiply").returncode == 1


def test_run_prompt_works_on_a_gguf_bitpack_wrote_and_speaks_text(tmp_path):
    gguf = tmp_path / "b.gguf"
    assert bitpack("convert", MODELS / "b158-packed", "--to", "i2_s", "-o", gguf).returncode == 0
    prompt = "the house where"
    from_gguf = bitpack("run", gguf, "--prompt", prompt, "--json")
    assert from_gguf.returncode == 0, from_gguf.stderr
    from_hf = json.loads(bitpack("run", MODELS / "b158-packed", "--prompt", prompt, "--json").stdout)
    ran = json.loads(from_gguf.stdout)
    assert ran["tokens"] == from_hf["tokens"] and ran["tokens"][0] == 298  # the same ids, BOS as the file says
    assert ran["positions"] == from_hf["positions"]
    top = ran["positions"][0]["top"]
    assert all(isinstance(t["text"], str) for t in top) and 0 < top[0]["prob"] <= 1
    shown = bitpack("run", gguf, "--prompt", prompt)
    assert "logit" in shown.stdout.splitlines()[0] and "probability" in shown.stdout.splitlines()[0]
    assert repr(top[0]["text"]) in shown.stdout


def test_run_max_new_tokens_continues_greedily_and_says_how_long_it_took(tmp_path):
    from bitpack.executor import executor
    from bitpack.pipelines.open import open_model

    model = MODELS / "b158-packed"
    done = bitpack("run", model, "--prompt", "the house where", "--max-new-tokens", "3", "--json")
    assert done.returncode == 0, done.stderr
    ran = json.loads(done.stdout)
    generated = ran["generated"]
    assert len(generated["tokens"]) == 3 and generated["seconds"] >= 0 and isinstance(generated["text"], str)
    assert generated["codes_kept"] is True  # a fixture's few kilobytes of codes fit any machine
    assert generated["tokens"][0] == ran["positions"][-1]["top"][0]["id"]
    forward = executor(open_model(model)).forward  # each token is the argmax after everything before it
    prefix = list(ran["tokens"])
    for token in generated["tokens"]:
        assert token == int(np.argmax(forward(prefix)[-1]))
        prefix.append(token)
    shown = bitpack("run", model, "--prompt", "the house where", "--max-new-tokens", "3")
    assert "continuation (3 tokens, greedy" in shown.stdout and repr(generated["text"]) in shown.stdout
    assert "decoded codes kept" in shown.stdout


def test_a_continuation_keeps_decoded_codes_only_when_they_fit():
    """Steps after the first re-run the prefix: kept codes (a byte per weight) skip decoding
    them again, when half the available memory holds them; unknown memory keeps nothing."""
    from bitpack.executor import kept_codes_bytes
    from bitpack.pipelines.open import open_model
    from bitpack.pipelines.run import available_memory, keep_for_continuation

    model = open_model(MODELS / "b158-packed")
    need = kept_codes_bytes(model)
    assert need == 2 * (2 * 256 * 256 + 2 * 128 * 256 + 3 * 512 * 256)  # 2 layers: q, o; k, v; gate, up, down
    assert keep_for_continuation(model, 3, available=2 * need)
    assert not keep_for_continuation(model, 3, available=2 * need - 1)
    assert not keep_for_continuation(model, 1, available=10 * need)  # no step re-runs the prefix
    assert not keep_for_continuation(open_model(MODELS / "llama-f16"), 3, available=1 << 40)  # floats: nothing
    if Path("/proc/meminfo").exists():
        assert available_memory() > 0
    else:
        assert available_memory() is None
