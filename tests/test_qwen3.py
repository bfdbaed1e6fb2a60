"""Ternary Bonsai and the Qwen3 family end to end (issue 12; spec qwen3.md, formats-2026.md).

Every published layout of a tiny Bonsai-shaped qwen3 model (fixtures/make_qwen3_fixtures.py: the
legacy group-128 GGUF under id 42, the F16 GGUF, the HF "-unpacked" checkpoint; tied, untied and
YaRN variants) is read into the same canonical tensors the generator computed, converts exactly
to q2_0 / pq2_0 / ptq1_0 / unpacked, and every step verifies identical with max diff 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack
from oracles import llama_cpp_logits, qwen3_logits

from bitpack.codecs import get_codec
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.gguf_write import GGUFWriter
from bitpack.errors import BitpackError
from bitpack.executor import executor
from bitpack.models.hparams import HParams
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.open import open_model
from bitpack.pipelines.verify import verify

VARIANTS = ("qwen3-tied", "qwen3-untied", "qwen3-yarn")
LAYOUTS = ("unpacked", "F16", "Q2_0-legacy")
TOKENS = [1, 5, 42, 7, 99, 200, 13, 64, 3, 17, 250, 101, 9, 77, 300, 2]


def out(tmp_path: Path, src: Path, codec: str, **options) -> Path:
    path = tmp_path / f"{src.name.split('.')[0]}-{codec}{'' if codec == 'unpacked' else '.gguf'}"
    convert(src, codec, ConvertOptions(output=path, overwrite=True, receipt=False, **options))
    return path


def rewritten(src: Path, dst: Path, *, extra_kv=(), change=None) -> Path:
    """A copy of a GGUF file with keys added and one tensor's bytes changed by ``change(name, raw)``."""
    with GGUFFile(src) as f, GGUFWriter(dst) as w:
        for key, value in f.kv.items():
            if key != "general.alignment":
                w.add_kv(key, value, f.kv_types[key])
        for key, value, vtype in extra_kv:
            w.add_kv(key, value, vtype)
        for t in f.tensors:
            w.add_tensor(t.name, t.shape, t.type_id, t.nbytes)
        w.write_header()
        for t in f.tensors:
            raw = f.raw(t).copy()
            w.write_tensor(t.name, change(t.name, raw) if change else raw)
    return dst


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_published_layout_reads_as_the_generators_ternary_tensors(qwen3, expected, variant, layout):
    model = open_model(qwen3[f"{variant}-{layout}"])
    assert model.arch.name == "qwen3" and model.precision == "ternary"
    assert (model.hparams.rope_scaling is not None) == (variant == "qwen3-yarn")
    coded = {e.name: e for e in model.coded}
    assert set(coded) == {k.split("/")[1] for k in expected if k.startswith(variant + "/")}
    for name, e in coded.items():
        t = e.load()
        codes, scale = expected[f"{variant}/{name}/codes"], expected[f"{variant}/{name}/scale"]
        np.testing.assert_array_equal(t.codes, codes)
        np.testing.assert_array_equal(t.values, codes * np.repeat(scale, 128, axis=1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_legacy_to_q2_0_to_pq2_0_to_ptq1_0_to_unpacked_is_identical_at_every_step(qwen3, tmp_path, variant):
    chain = [qwen3[f"{variant}-Q2_0-legacy"]]
    for codec in ("q2_0", "pq2_0", "ptq1_0", "unpacked"):
        chain.append(out(tmp_path, chain[-1], codec))
    for ref, cand in zip(chain, chain[1:]):
        report = verify(ref, cand)
        assert report["identical"] and report["max_abs_diff"] == 0, (ref, cand, report)
        assert report.get("logits_compared", True)
    with GGUFFile(chain[1]) as f:  # mainline's Q2_0, embedding and head included
        assert f.dialect == "mainline" and {f.type_name(t) for t in f.tensors} == {"Q2_0", "F32"}
        assert f.kv["qwen3.attention.key_length"] == 64


@pytest.mark.parametrize("layout", ("unpacked", "F16"))
def test_float_sources_convert_exactly_and_verify_against_the_legacy_file(qwen3, tmp_path, layout):
    q2 = out(tmp_path, qwen3[f"qwen3-untied-{layout}"], "q2_0")
    report = verify(qwen3["qwen3-untied-Q2_0-legacy"], q2)
    assert report["identical"] and report["max_abs_diff"] == 0


def test_tq_is_refused_naming_the_group_and_merging_is_lossy_and_reported(qwen3, tmp_path):
    src = qwen3["qwen3-tied-Q2_0-legacy"]
    with pytest.raises(BitpackError, match=r"tq2_0 cannot hold .*group 0 holds weights with different scales"
                                           r".*ffn_down.weight: cannot encode shape \(256, 384\)"):
        out(tmp_path, src, "tq2_0")
    merged = tmp_path / "merged.gguf"  # iq2_bn (ik_llama.cpp): one f32 scale per row, any K % 64
    report = convert(src, "iq2_bn", ConvertOptions(output=merged, receipt=False, allow_scale_merge=True))
    assert report["rounded"] and all("relative weight error" in n for n in report["rounded"])
    assert not verify(src, merged)["identical"]


def test_a_projection_off_the_grid_is_float_and_refused_for_ternary_targets(qwen3, tmp_path):
    def nudge(name, raw):
        if name == "blk.1.ffn_up.weight":
            values = raw.view("<f2").reshape(384, 256)
            values[7, 130] = np.float16(values[7, 130]) * np.float16(1.5) + np.float16(0.001)
        return raw

    bad = rewritten(qwen3["qwen3-tied-F16"], tmp_path / "bad-F16.gguf", change=nudge)
    model = open_model(bad)
    assert model.precision == "float" and "blk.1.ffn_up.weight" in model.float_reason
    assert "row 7, group of 32 4" in model.float_reason
    with pytest.raises(BitpackError, match=r"blk.1.ffn_up.weight: is not ternary \(row 7, group of 32 4"):
        out(tmp_path, bad, "q2_0")
    done = bitpack("convert", bad, "--to", "unpacked", "-o", tmp_path / "u")
    assert done.returncode == 2 and "full-precision" in done.stderr and "blk.1.ffn_up.weight" in done.stderr
    assert not (tmp_path / "u").exists() and "Traceback" not in done.stderr


def test_rotated_weights_are_never_run_as_plain_and_go_only_to_the_fork(qwen3, tmp_path):
    from bitpack.containers.gguf_kv import ValueType as V

    # Bonsai 2 files are prism-v7 files (PQ2_0, id 142); a legacy id-42 file with these keys is
    # contradictory evidence, which dialect detection refuses
    rotated = rewritten(out(tmp_path, qwen3["qwen3-tied-Q2_0-legacy"], "pq2_0"), tmp_path / "rot.gguf",
                        extra_kv=[("prism.hadamard.version", 1, V.UINT32),
                                  ("prism.hadamard.block_size", 128, V.UINT32)])
    with pytest.raises(BitpackError, match="prism.hadamard.version"):
        executor(open_model(rotated)).forward(TOKENS)
    with pytest.raises(BitpackError, match="Hadamard-rotated"):  # stock llama.cpp would write wrong text
        out(tmp_path, rotated, "q2_0", dialect="mainline")
    with GGUFFile(out(tmp_path, rotated, "q2_0")) as f:  # by default, for the fork, which undoes it
        assert f.dialect == "prism" and "prism.hadamard.version" in f.kv
    pq = out(tmp_path, rotated, "pq2_0")  # the fork undoes the rotation: every key carried
    with GGUFFile(pq) as f:
        assert f.kv["prism.hadamard.block_size"] == 128 and f.dialect == "prism"
    report = verify(rotated, pq)
    assert report["identical"] and report["logits_compared"] is False and "Hadamard" in report["note"]
    for target in ("unpacked", "int8", "bitstack"):  # no runtime of these undoes the rotation
        with pytest.raises(BitpackError, match="Hadamard-rotated.*without the keys"):
            out(tmp_path, rotated, target)
        assert not (tmp_path / f"rot-{target}").exists()


def test_unpacked_is_an_ordinary_checkpoint_and_refused_for_bitnet(qwen3, tmp_path):
    un = out(tmp_path, qwen3["qwen3-untied-Q2_0-legacy"], "unpacked")
    config = json.loads((un / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["torch_dtype"] == "float16"
    assert "quantization_config" not in config and not config["tie_word_embeddings"]
    assert (un / "tokenizer.json").is_file()
    models = Path(__file__).resolve().parents[1] / "fixtures" / "models"
    with pytest.raises(BitpackError, match="unpacked writes weight-only models"):
        out(tmp_path, models / "b158-packed", "unpacked")


def test_unpacked_codec_keeps_every_granularity_and_refuses_what_its_dtype_cannot_hold():
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 2, (8, 256)).astype(np.int8)
    group = rng.uniform(0.01, 0.05, (8, 2)).astype(np.float16).astype(np.float32)
    for dtype in ("f16", "bf16", "f32"):
        codec = get_codec("unpacked", dtype=dtype)
        back, scale = codec.decode(codec.encode(codes, np.float32(0.5)), codes.shape)
        assert np.array_equal(back, codes) and scale == np.float32(0.5)
    codec = get_codec("unpacked")
    back, scale = codec.decode(codec.encode(codes, group), codes.shape)
    assert np.array_equal(back, codes) and np.array_equal(scale, group)
    with pytest.raises(Exception, match="f16"):
        codec.encode(codes, np.float32(0.1))  # 0.1 is not an f16 value


def test_a_ternary_tables_rows_decode_alone_to_the_whole_tables_rows(qwen3):
    for layout in ("Q2_0-legacy", "F16"):
        e = open_model(qwen3[f"qwen3-untied-{layout}"]).entry("output.weight")
        whole = e.load()
        part = e.load_rows(100, 164)
        np.testing.assert_array_equal(part.values, whole.values[100:164])


@pytest.mark.parametrize("rope, match", [
    ({"rope_type": "dynamic", "factor": 2.0}, "type 'dynamic' is not supported"),
    ({"rope_type": "yarn", "factor": 4.0, "beta_fast": 16}, "beta_fast = 16"),
    ({"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.2}, "attention_factor"),
    ({"rope_type": "yarn", "factor": -1}, "'factor' is -1"),
])
def test_rope_scaling_the_runtimes_compute_differently_is_refused_named(rope, match):
    config = {"hidden_size": 256, "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 4,
              "vocab_size": 320, "rms_norm_eps": 1e-6, "hidden_act": "silu", "rope_scaling": rope}
    with pytest.raises(BitpackError, match=match):
        HParams.from_config(config, "x")


def test_yarn_is_carried_between_config_json_and_gguf(qwen3, tmp_path):
    q2 = out(tmp_path, qwen3["qwen3-yarn-unpacked"], "q2_0")
    with GGUFFile(q2) as f:
        assert f.kv["qwen3.rope.scaling.type"] == "yarn" and f.kv["qwen3.rope.scaling.factor"] == 4.0
        assert f.kv["qwen3.rope.scaling.original_context_length"] == 1024
    un = out(tmp_path, q2, "unpacked")
    rope = json.loads((un / "config.json").read_text())["rope_scaling"]
    assert rope == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}
    plain = executor(open_model(qwen3["qwen3-tied-Q2_0-legacy"])).forward(TOKENS)
    yarn = executor(open_model(q2)).forward(TOKENS)
    assert np.abs(plain - yarn).max() > 1e-2  # same weights: YaRN alone moves the logits


def test_inspect_reports_the_detected_granularity_of_float_sources(qwen3):
    done = bitpack("inspect", qwen3["qwen3-tied-unpacked"])
    assert done.returncode == 0 and "unpacked ternary" in done.stdout and "qwen3" in done.stdout
    assert "per group of 128" in done.stdout
    report = json.loads(bitpack("inspect", qwen3["qwen3-tied-F16"], "--json").stdout)
    tensors = {t["name"]: t for t in report["tensors"]}
    assert tensors["blk.0.attn_q.weight"]["scale"]["granularity"] == "group of 128"
    assert tensors["blk.0.attn_q.weight"]["ternarized"] == "on its grid (exact)"
    assert tensors["token_embd.weight"]["scale"]["granularity"] == "group of 128"


# -- the real runtimes ------------------------------------------------------------------------

@pytest.mark.oracle
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_llama_cpp_runs_bitpacks_q2_0_and_llamacpp_numerics_reproduce_it(qwen3, tmp_path, variant, layout):
    """Stock llama.cpp (llama-cpp-python 0.3.36's x86 build) loads the Q2_0 file bitpack makes from
    each published layout; bitpack's emulation of its CPU path (Q8_0 activations with ties to
    even, the generic Q2_0 block order, F16 K/V, ggml's RoPE) is bit-exact at every position
    here (measured: 16 of 16 positions, every variant and layout; qwen3.md §6.3)."""
    q2 = out(tmp_path, qwen3[f"{variant}-{layout}"], "q2_0")
    ref = llama_cpp_logits(q2, TOKENS)
    predicted = executor(open_model(q2), "llamacpp").forward(TOKENS)
    exact_rows = int((np.abs(predicted - ref).max(axis=-1) == 0).sum())
    assert exact_rows >= len(TOKENS) - 2, exact_rows  # a SIMD-order flip may move a position
    assert np.abs(predicted - ref).max() / np.abs(ref).max() < 1e-5
    assert (predicted.argmax(-1) == ref.argmax(-1)).all()
    exact = executor(open_model(q2), "exact").forward(TOKENS)  # float activations: a different computation
    assert np.abs(exact - ref).max() > 0


@pytest.mark.oracle
@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_runs_the_unpacked_output_and_hf_numerics_reproduce_it(qwen3, tmp_path, variant):
    un = out(tmp_path, qwen3[f"{variant}-Q2_0-legacy"], "unpacked")
    ref = qwen3_logits(un, TOKENS)
    for numerics in ("hf", "exact"):
        predicted = executor(open_model(un), numerics).forward(TOKENS)
        # measured 3.3e-7 - 4.5e-7 of max|logit|: BLAS summation order, nothing else
        assert np.abs(predicted - ref).max() / np.abs(ref).max() < 5e-6, numerics
        assert (predicted.argmax(-1) == ref.argmax(-1)).all()


def test_an_ordinary_qwen3_is_refused_for_ternary_targets_and_bitstack_takes_it(qwen3, tmp_path):
    def off_grid(name, raw):
        if name.endswith("ffn_up.weight"):
            v = raw.view("<f2")
            v[:] = (v.astype(np.float32) * np.float32(1.01) + np.float32(1e-3)).astype("<f2")
        return raw

    ordinary = rewritten(qwen3["qwen3-tied-F16"], tmp_path / "ordinary-F16.gguf", change=off_grid)
    model = open_model(ordinary)
    assert model.precision == "float" and not any(e.ternary for e in model.entries)  # tables stay float too
    with pytest.raises(BitpackError, match="not ternary.*--to bitstack"):
        out(tmp_path, ordinary, "q2_0")
    stack = tmp_path / "stack"
    convert(ordinary, "bitstack", ConvertOptions(output=stack, receipt=False))
    report = verify(ordinary, stack, min_top1=0.9)
    assert report["passed"] and not report["identical"] and report["kl"] < 1e-3


def test_a_flipped_code_in_a_ternary_head_is_found_and_named(qwen3, tmp_path):
    q2 = out(tmp_path, qwen3["qwen3-untied-Q2_0-legacy"], "q2_0")

    def flip(name, raw):
        if name == "output.weight":  # row 300, first block: weight 0's code 0 <-> 2
            at = 300 * (256 // 64) * 18 + 2
            raw[at] = (raw[at] & 0xFC) | (2 - (raw[at] & 3) if raw[at] & 3 != 1 else 0)
        return raw

    bad = rewritten(q2, tmp_path / "flipped.gguf", change=flip)
    report = verify(q2, bad)
    assert not report["identical"] and report["differing_tensors"] == ["output.weight"]
    assert report["tensor_differences"][0]["reason"] == f"1 of {320 * 256} codes differ"


@pytest.mark.parametrize("codec", ("int8", "i2_packed"))
def test_bitpacks_own_hf_layouts_keep_group_scales_and_ternary_tables(qwen3, tmp_path, codec):
    src = qwen3["qwen3-untied-Q2_0-legacy"]
    hf = out(tmp_path, src, codec)
    model = open_model(hf)
    assert model.entry("token_embd.weight").ternary and model.entry("output.weight").ternary
    assert verify(src, hf)["identical"]
    assert verify(src, out(tmp_path, hf, "q2_0"))["identical"]


def test_a_ternary_qwen3_decomposes_into_a_stack(qwen3, tmp_path):
    src = qwen3["qwen3-untied-Q2_0-legacy"]
    stack = tmp_path / "stack"
    convert(src, "bitstack", ConvertOptions(output=stack, receipt=False, blocks=4, rank=4))
    report = verify(src, stack, min_top1=0.5)
    assert report["passed"] and not report["tensor_differences"]  # tables kept as their exact values


def hadamard_matrix(n: int) -> np.ndarray:
    i = np.arange(n)
    return np.where(np.bitwise_count(i[:, None] & i[None, :]) % 2, -1.0, 1.0) / np.sqrt(n)


def test_hadamard_folded_weights_run_as_the_unfolded_model(qwen3, tmp_path):
    """Bonsai 2's contract (qwen3.md §9.2) on the untied model: every projection and the head
    stored folded (W' = W·diag(s)·H), the embedding stored latent (z = H(s ⊙ e)). The executor
    must compute what the unfolded model computes: W = W'·H·diag(s), e = s ⊙ (H z), written here
    as plain F32 tensors by an independent NumPy computation."""
    from bitpack.containers.gguf_kv import ValueType as V

    rng = np.random.default_rng(9)
    n, widths = 128, (256, 384)
    signs = {w: rng.choice([-1, 1], size=w) for w in widths}
    h = hadamard_matrix(n)
    src = out(tmp_path, qwen3["qwen3-untied-Q2_0-legacy"], "pq2_0")
    model = open_model(src)
    folded = [e.name for e in model.coded if e.name != "token_embd.weight"]
    keys = [("prism.hadamard.version", 1, V.UINT32), ("prism.hadamard.block_size", n, V.UINT32),
            ("prism.hadamard.transform", "normalized-sylvester-walsh-hadamard", V.STRING),
            ("prism.hadamard.axis", "input-last-dimension", V.STRING),
            ("prism.hadamard.sign_mode", "explicit", V.STRING),
            ("prism.hadamard.weight_names", folded, (V.ARRAY, V.STRING)),
            ("prism.hadamard.inverse_weight_names", ["token_embd.weight"], (V.ARRAY, V.STRING)),
            ("prism.hadamard.sign_widths", np.array(widths, dtype=np.int32), V.ARRAY),
            ("prism.hadamard.sign_values", np.concatenate([signs[w] for w in widths]).astype(np.int32), V.ARRAY)]
    rotated = rewritten(src, tmp_path / "bonsai2.gguf", extra_kv=keys)

    def unfolded(e) -> np.ndarray:  # float64: W'·H_K·diag(s_K), or s ⊙ (H z) for the latent table
        w = e.load().values.astype(np.float64)
        k = w.shape[1]
        hk = np.kron(np.eye(k // n), h)
        return (w @ hk) * signs[k] if e.name in folded else (w @ hk.T) * signs[k]

    reference = tmp_path / "unfolded.gguf"
    with GGUFFile(src) as f, GGUFWriter(reference) as w:
        for key, value in f.kv.items():
            if key != "general.alignment":
                w.add_kv(key, value, f.kv_types[key])
        for t in f.tensors:
            w.add_tensor(t.name, t.shape, 0, 4 * int(np.prod(t.shape)))
        w.write_header()
        for t in f.tensors:
            e = model.entry(t.name)
            values = unfolded(e) if e.coded else e.load().values
            w.write_tensor(t.name, np.ascontiguousarray(values, dtype="<f4"))

    got = executor(open_model(rotated)).forward(TOKENS)
    want = executor(open_model(reference)).forward(TOKENS)
    plain = executor(model).forward(TOKENS)  # the same bytes run as if plain: a different model
    scale = np.abs(want).max()
    print(f"rotated vs unfolded: {np.abs(got - want).max() / scale:.2e}, as plain: {np.abs(plain - want).max() / scale:.2e}")
    assert np.abs(got - want).max() / scale < 1e-5
    assert (got.argmax(-1) == want.argmax(-1)).all()
    assert np.abs(plain - want).max() / scale > 1e-2
    done = bitpack("inspect", rotated)
    assert "Hadamard-rotated" in done.stderr + done.stdout and "bitpack's executor" in done.stderr + done.stdout
    report = verify(rotated, out(tmp_path, rotated, "ptq1_0"))  # the contract is run: logits compared
    assert report["identical"] and report["max_abs_diff"] == 0 and report.get("logits_compared", True)
