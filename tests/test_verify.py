"""The reference executor and `bitpack verify`.

- bitnetcpp numerics reproduce the real bitnet.cpp binary's logits (fixtures/upstream_golden);
- every conversion of every fixture verifies as identical, max difference exactly 0;
- a flipped weight, a wrong scale direction, a swapped tensor and a wrong rope theta are each
  caught, with the tensor or key named.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack

from bitpack.codecs import get_codec
from bitpack.codecs.tiles import read_kernel_config
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.gguf_write import GGUFWriter
from bitpack.executor import executor
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.open import open_model
from bitpack.pipelines.verify import verify

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
GOLDEN = ROOT / "fixtures" / "upstream_golden"  # copies of shared/golden, see its README
TL2_TILES = "".join(
    f"[Kernels_{i}]\nm = {m}\nk = {k}\nbm = {bm}\nbk = 96\nbmm = 32\n\n"
    for i, (m, k, bm) in enumerate([(256, 256, 128), (128, 256, 128), (512, 256, 256), (256, 512, 128)]))


def golden(name: str) -> Path:
    path = GOLDEN / name
    assert path.is_file(), f"golden data missing: {path}"
    return path


@pytest.mark.parametrize("model, mode, tokens, logits", [
    ("tiny_bitnet_b158_i2s.gguf", "bitnetcpp", "tiny_bitnet_b158_tokens.npy", "tiny_bitnet_b158_i2s_logits_batch.npy"),
    ("tiny_bitnet_b158_i2s.gguf", "bitnetcpp-seq", "tiny_bitnet_b158_tokens.npy", "tiny_bitnet_b158_i2s_logits_seq.npy"),
    ("tiny_bitnet_b158_tl2.gguf", "bitnetcpp-seq", "tiny_bitnet_b158_tokens.npy", "tiny_bitnet_b158_tl2_logits_seq.npy"),
    ("tiny_bitnet_b158_tl2.gguf", "bitnetcpp", "tiny_bitnet_b158_tokens7.npy", "tiny_bitnet_b158_tl2_logits_batch7.npy"),
])
def test_bitnetcpp_numerics_reproduce_the_real_binary(model, mode, tokens, logits):
    tiles = read_kernel_config(TL2_TILES) if "tl2" in model else None
    m = open_model(golden(model), tile_params=tiles)
    got = executor(m, mode).forward(np.load(golden(tokens)).tolist())
    want = np.load(golden(logits))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_exact_mode_is_not_bitnetcpp_mode():
    # the modes really differ (f16 V cache, double sums): exact mode is close, not equal
    m = open_model(golden("tiny_bitnet_b158_i2s.gguf"))
    tokens = np.load(golden("tiny_bitnet_b158_tokens.npy")).tolist()
    exact, emulated = executor(m, "exact").forward(tokens), executor(m, "bitnetcpp").forward(tokens)
    assert not np.array_equal(exact, emulated)
    assert np.abs(exact - emulated).max() < 0.05 * np.abs(emulated).max()


SOURCES = {"b158-bf16": {}, "b158-packed": {}, "bitnet-f32-sharded": {}, "llama-packed": {"scale_convention": "divide"}}


@pytest.mark.parametrize("target", ["int8", "i2_packed", "hf_packed", "i2_s", "tl1", "tl2", "tq1_0", "tq2_0"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_every_conversion_verifies_identical(tmp_path, source, target):
    options = SOURCES[source]
    exact_scales = not (target.startswith("tq") and source in ("b158-bf16", "llama-packed"))
    out = convert(MODELS / source, target, ConvertOptions(output=tmp_path / "out", allow_scale_rounding=True, **options))
    report = verify(MODELS / source, out["output"], reference_options=options, candidate_options=options,
                    n_tokens=8)
    if exact_scales:
        assert report["identical"] and report["passed"], report["tensor_differences"]
        assert report["max_abs_diff"] == 0 and report["kl"] is None and report["top1_agreement"] == 1
    else:  # scales rounded to fp16 on request: named, and the logits move a little
        assert not report["passed"] and report["differing_tensors"]
        assert all("scale" in t["reason"] for t in report["tensor_differences"])
        assert report["max_rel_diff"] < 0.05 and report["kl"] < 1e-3


def _rewrite_gguf(src: Path, dst: Path, *, kv=None, data=None) -> None:
    """Copy a GGUF changing some KV values or some tensors' bytes."""
    f = GGUFFile(src)
    with GGUFWriter(dst) as w:
        for key, value in f.kv.items():
            w.add_kv(key, (kv or {}).get(key, value), f.kv_types[key])
        for t in f.tensors:
            w.add_tensor(t.name, f.shape(t.name), t.type_id, t.nbytes)
        w.write_header()
        for t in f.tensors:
            w.write_tensor(t.name, (data or {}).get(t.name, f.raw(t.name)))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    return Path(convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=folder / "m.gguf"))["output"])


def test_a_flipped_weight_is_caught_and_named(converted, tmp_path):
    f = GGUFFile(converted)
    name = "blk.1.ffn_down.weight"
    codec = get_codec("i2_s")
    codes, scale = codec.decode(f.raw(name), f.shape(name))
    codes = codes.copy()
    codes[7, 11] = 1 if codes[7, 11] != 1 else -1
    bad = tmp_path / "flipped.gguf"
    _rewrite_gguf(converted, bad, data={name: codec.encode(codes, scale)})
    report = verify(converted, bad, n_tokens=8)
    assert not report["passed"] and report["differing_tensors"] == [name]
    assert report["tensor_differences"][0]["codes_differing"] == 1


def test_a_swapped_tensor_is_caught_and_named(converted, tmp_path):
    f = GGUFFile(converted)
    gate, up = "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"
    bad = tmp_path / "swapped.gguf"
    _rewrite_gguf(converted, bad, data={gate: f.raw(up), up: f.raw(gate)})
    report = verify(converted, bad, n_tokens=8)
    assert sorted(report["differing_tensors"]) == sorted([gate, up])
    assert not report["identical"]


def test_a_wrong_rope_theta_is_caught_and_named(converted, tmp_path):
    bad = tmp_path / "theta.gguf"
    _rewrite_gguf(converted, bad, kv={"bitnet-b1.58.rope.freq_base": 10000.0})
    report = verify(converted, bad, n_tokens=8)
    assert any(line.startswith("rope_theta: 500000.0 vs 10000.0") for line in report["metadata_differences"])
    assert not report["passed"] and not report["identical"]


def test_a_wrong_scale_direction_is_caught_and_named(tmp_path):
    # llama-packed is bitlinear (divide); reading it as autobitlinear (multiply) is the
    # upstream converters' bug (microsoft/BitNet PR #616)
    report = verify(MODELS / "llama-packed", MODELS / "llama-packed", n_tokens=8,
                    reference_options={"scale_convention": "divide"},
                    candidate_options={"scale_convention": "multiply"})
    assert not report["passed"]
    assert len(report["differing_tensors"]) == 14
    assert all(t["reason"].startswith("scale") for t in report["tensor_differences"])


def test_cli_verify_exit_codes_and_json(converted, tmp_path):
    same = bitpack("verify", MODELS / "b158-packed", converted, "--json", "--n-tokens", "6")
    assert same.returncode == 0, same.stderr
    report = json.loads(same.stdout)
    for key in ("identical", "max_abs_diff", "max_rel_diff", "top1_agreement", "kl", "tokens", "numerics",
                "differing_tensors"):
        assert key in report
    assert report["identical"] and len(report["tokens"]) == 6
    bad = tmp_path / "theta.gguf"
    _rewrite_gguf(converted, bad, kv={"bitnet-b1.58.rope.freq_base": 10000.0})
    differ = bitpack("verify", converted, bad, "--tokens", "1,2,3")
    assert differ.returncode == 1 and "rope_theta" in differ.stderr
    missing = bitpack("verify", converted, tmp_path / "nope.gguf")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    checked = bitpack("convert", MODELS / "b158-packed", "--to", "tl2", "-o", tmp_path / "c.gguf", "--verify", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["verify"]["identical"] is True
    logits = tmp_path / "logits.npy"
    ran = bitpack("run", converted, "--tokens", "5,6,7", "--save-logits", logits, "--json")
    assert ran.returncode == 0, ran.stderr
    saved = np.load(logits)
    assert saved.shape == (3, 300) and saved.dtype == np.float32
    top = json.loads(ran.stdout)["positions"][0]["top"][0]
    assert top["id"] == int(saved[2].argmax())


def test_an_output_tensor_in_a_bitnet_b158_file_is_ignored_with_a_warning(converted, tmp_path):
    # the official 333-tensor 2B-4T build carries output.weight; the fork never reads it
    f = GGUFFile(converted)
    extra = tmp_path / "with_output.gguf"
    with GGUFWriter(extra) as w:
        for key, value in f.kv.items():
            w.add_kv(key, value, f.kv_types[key])
        for t in f.tensors:
            w.add_tensor(t.name, f.shape(t.name), t.type_id, t.nbytes)
        embd = f.tensor("token_embd.weight")
        w.add_tensor("output.weight", f.shape("token_embd.weight"), embd.type_id, embd.nbytes)
        w.write_header()
        for t in f.tensors:
            w.write_tensor(t.name, f.raw(t.name))
        w.write_tensor("output.weight", f.raw("token_embd.weight"))
    model = open_model(extra)
    assert any("output.weight is ignored" in line for line in model.warnings)
    assert verify(converted, extra, n_tokens=4)["identical"]


@pytest.mark.parametrize("target", ["q2_0", "pq2_0", "iq2_bn", "iq1_bn"])
def test_layouts_with_row_or_group_scales_verify_identical(tmp_path, target):
    """The same weights stored with one scale per group or row verify identical to their
    per-tensor source: tensors compared at the coarsest exact scale, logits bit for bit."""
    source = MODELS / ("b158-packed" if target.startswith("iq") else "llama-packed")
    opts = {"scale_convention": "divide", "allow_scale_rounding": True} if "llama" in source.name else {}
    mid = convert(source, target, ConvertOptions(output=tmp_path / "m.gguf", receipt=False, **opts))
    back = convert(mid["output"], "int8", ConvertOptions(output=tmp_path / "back", receipt=False))
    report = verify(mid["output"], back["output"])
    assert report["identical"] is True and report["max_abs_diff"] == 0.0, report
