"""Conversions between every source layout and every target, through the public pipeline.

The invariant (DESIGN.md): codes identical and every scale identical as a float32 value,
in any direction, unless the user allowed rounding -- then exactly the listed tensors
change, by fp16 rounding.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bitpack.codecs import codec_class, list_codecs
from bitpack.codecs._scales import coarsest
from bitpack.containers.gguf_types import codec_dialects
from bitpack.errors import BitpackError
from bitpack.models.arch import permute_rows
from bitpack.pipelines.convert import ConvertOptions, convert, default_output
from bitpack.pipelines.open import open_model
from bitpack.pipelines.verify import verify

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
SOURCES = {
    "b158-bf16": {},
    "b158-packed": {},
    "bitnet-f32-sharded": {},
    "llama-packed": {"scale_convention": "divide"},
}
GGUF = ("i2_s", "tl1", "tl2", "tq1_0", "tq2_0")
# Codecs that encode and decode tensors but are not yet wired into the GGUF dialect and type
# tables or the model targets (formats-2026 §5); drop a name here once convert() writes it.
NOT_YET_CONVERTIBLE = ()
# Targets for weight-only graphs (qwen3) only, refused for these BitNet fixtures: tests/test_qwen3.py.
WEIGHT_ONLY_TARGETS = ("unpacked",)
TARGETS = [c for c in list_codecs()
           if not codec_class(c).lossy and c not in NOT_YET_CONVERTIBLE and c not in WEIGHT_ONLY_TARGETS]
# TQ keeps fp16 block scales; only the `bitnet` graph reads exact F32 .scale tensors.
NEEDS_ROUNDING = {("b158-bf16", "tq1_0"), ("b158-bf16", "tq2_0"), ("llama-packed", "tq1_0"),
                  ("llama-packed", "tq2_0")}


def needs_rounding(source: str, target: str, tensors: dict) -> bool:
    """Must a conversion round scales? TQ's known cases above; any other codec with f16 scales
    rounds exactly when some source scale is not an f16 value (formats-2026.md §7.3)."""
    cls = codec_class(target)
    if getattr(cls, "separate_scale", False) or cls.scale_dtype != "f16":
        return (source, target) in NEEDS_ROUNDING
    scales = [np.float32(v.scale) for v in tensors.values() if hasattr(v, "codes") and np.ndim(v.scale) == 0]
    return any(np.float32(np.float16(s)) != s for s in scales)


def canonical(model):
    return {e.name: e.load() for e in model.entries}


@pytest.fixture(scope="module")
def sources():
    return {name: canonical(open_model(MODELS / name, **opts)) for name, opts in SOURCES.items()}


def assert_same(a, b, *, scale_f16=False):
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if hasattr(x, "codes"):
            np.testing.assert_array_equal(x.codes, y.codes, err_msg=name)
            # one scale per tensor, row or group: compared at the coarsest exact granularity
            got, want = coarsest(x.scale, x.codes), coarsest(y.scale, y.codes)
            want = np.float32(np.float16(want)) if scale_f16 else want
            assert np.array_equal(np.float32(got), np.float32(want)), (name, x.scale, y.scale)
        else:
            np.testing.assert_array_equal(x.values, y.values, err_msg=name)


@pytest.mark.parametrize("target", TARGETS)  # bitstack: test_bitstack_*
@pytest.mark.parametrize("source", list(SOURCES))
def test_every_source_to_every_target_round_trips(tmp_path, sources, source, target):
    opts = ConvertOptions(output=tmp_path / f"out.{target}", scale_convention=SOURCES[source].get("scale_convention"))
    if codec_class(target).container == "gguf":
        arch = open_model(MODELS / source, scale_convention=opts.scale_convention).arch
        if not set(codec_dialects(target)) & set(arch.dialects):  # e.g. q2_0 of a bitnet-b1.58 model
            with pytest.raises(BitpackError, match=f"no runtime executes a {arch.name} model stored as {target}"):
                convert(MODELS / source, target, opts)
            assert list(tmp_path.iterdir()) == []
            return
    if codec_class(target).codes_restricted:  # q1_0 is binary: these ternary models have zeros
        with pytest.raises(BitpackError, match=f"{target} cannot hold the codes of"):
            convert(MODELS / source, target, opts)
        assert list(tmp_path.iterdir()) == []
        return
    rounding = needs_rounding(source, target, sources[source])
    if rounding:
        with pytest.raises(BitpackError, match="would be rounded"):
            convert(MODELS / source, target, opts)
        assert list(tmp_path.iterdir()) == []  # refused before writing anything
        opts.allow_scale_rounding = True
    report = convert(MODELS / source, target, opts)
    assert Path(report["output"]).exists()
    back = canonical(open_model(report["output"]))
    assert_same(back, sources[source], scale_f16=rounding)
    if rounding:
        changed = [n for n, v in sources[source].items() if hasattr(v, "codes") and np.float32(np.float16(v.scale)) != v.scale]
        assert sorted(line.split(":")[0] for line in report["rounded"]) == sorted(changed)
    # and back again to transformers' layout, from whatever the target was
    again = convert(report["output"], "hf_packed", ConvertOptions(output=tmp_path / "again"))
    assert_same(canonical(open_model(again["output"])), back)


def test_readers_agree_with_the_independent_fixture_oracle(sources):
    expected = np.load(MODELS / "expected.npz")
    names = {}
    for key in expected.files:
        model, rest = key.split("/", 1)
        tensor, field = rest.rsplit("/", 1)
        names.setdefault((model, tensor), {})[field] = expected[key]
    checked = 0
    for (model, hf_name), want in names.items():
        if model not in sources:
            continue
        src = open_model(MODELS / model, **SOURCES[model])
        entry = next(e for e in src.entries if e.source_name == hf_name)
        got = sources[model][entry.name]
        np.testing.assert_array_equal(got.codes, want["codes"], err_msg=key)
        assert np.float32(got.scale) == np.float32(want["scale"]), (model, hf_name)
        checked += 1
    assert checked >= 4 * 7


def test_shapes_are_refused_up_front_listing_every_tensor(tmp_path):
    with pytest.raises(BitpackError) as err:
        convert(MODELS / "b158-k384-bf16", "tq2_0", ConvertOptions(output=tmp_path / "x.gguf"))
    message = str(err.value)
    assert "cannot hold 6 of 7 projections" in message  # ffn_down has K = 768
    assert "K = 384 is not a multiple of 256" in message
    assert list(tmp_path.iterdir()) == []
    report = convert(MODELS / "b158-k384-bf16", "i2_s", ConvertOptions(output=tmp_path / "x.gguf"))
    assert Path(report["output"]).is_file()


def test_pypi_gguf_reads_tq_files_and_dequantizes_to_codes_times_scale(tmp_path, sources):
    gguf = pytest.importorskip("gguf")
    for codec in ("tq1_0", "tq2_0"):
        out = convert(MODELS / "bitnet-f32-sharded", codec, ConvertOptions(output=tmp_path / f"m.{codec}.gguf"))
        reader = gguf.GGUFReader(out["output"])
        tensors = {t.name: t for t in reader.tensors}
        src = sources["bitnet-f32-sharded"]
        for name, t in src.items():
            if not hasattr(t, "codes"):
                continue
            values = gguf.quants.dequantize(tensors[name].data, tensors[name].tensor_type)
            scale_tensor = tensors.get(name.removesuffix(".weight") + ".scale")
            factor = float(scale_tensor.data[0]) if scale_tensor is not None else 1.0
            expected = t.codes.astype(np.float32) * (np.float32(1) if scale_tensor is not None else np.float32(np.float16(t.scale)))
            np.testing.assert_array_equal(values.reshape(t.codes.shape), expected)
            assert factor == 1.0 or np.float32(factor) == t.scale
        assert str(reader.fields["general.architecture"].contents()) == "bitnet"


def test_llama_gguf_rows_are_permuted_for_norm_rope(tmp_path, sources):
    out = convert(MODELS / "llama-packed", "i2_s", ConvertOptions(output=tmp_path / "l.gguf", scale_convention="divide"))
    from bitpack.codecs import get_codec
    from bitpack.containers.gguf_read import GGUFFile

    f = GGUFFile(out["output"])
    src = sources["llama-packed"]
    hp = open_model(MODELS / "llama-packed", scale_convention="divide").hparams
    for name, heads in (("blk.0.attn_q.weight", hp.n_heads), ("blk.1.attn_k.weight", hp.n_kv_heads)):
        codes, _ = get_codec("i2_s").decode(f.raw(name), f.shape(name))
        rows = codes.shape[0]
        np.testing.assert_array_equal(codes, src[name].codes[permute_rows(rows, rows // heads, to_gguf=True)])
        assert not np.array_equal(codes, src[name].codes)
    v, _ = get_codec("i2_s").decode(f.raw("blk.0.attn_v.weight"), f.shape("blk.0.attn_v.weight"))
    np.testing.assert_array_equal(v, src["blk.0.attn_v.weight"].codes)  # v is not permuted


def test_gguf_metadata_and_tokenizer(tmp_path):
    out = convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=tmp_path / "m.gguf"))
    from bitpack.containers.gguf_read import GGUFFile

    f = GGUFFile(out["output"])
    kv = f.kv
    assert kv["general.architecture"] == "bitnet-b1.58"
    assert kv["bitnet-b1.58.embedding_length"] == 256
    assert kv["bitnet-b1.58.attention.head_count_kv"] == 2
    assert kv["bitnet-b1.58.rope.freq_base"] == pytest.approx(500000.0)
    assert kv["tokenizer.ggml.model"] == "gpt2"
    assert "tokenizer.ggml.pre" in kv
    assert len(kv["tokenizer.ggml.tokens"]) == kv["bitnet-b1.58.vocab_size"]
    assert len(kv["tokenizer.ggml.merges"]) > 0
    assert kv["bitpack.codec"] == "i2_s" and kv["bitpack.dialect"] == "bitnet-cpp-2026"
    assert "output.weight" not in {t.name for t in f.tensors}  # tied: no output tensor
    assert f.type_name("blk.0.attn_norm.weight") == "F32"
    assert f.type_name("token_embd.weight") in ("F16", "BF16")
    assert f.dialect == "bitnet-cpp-2026"


def test_embedding_dtype_is_exact_by_default_and_lossy_choices_are_reported(tmp_path):
    exact = convert(MODELS / "bitnet-f32-sharded", "i2_s", ConvertOptions(output=tmp_path / "a.gguf"))
    types = {t["name"]: t["type"] for t in exact["tensors"]}
    assert types["token_embd.weight"] == "F32"  # random f32 values fit neither f16 nor bf16
    assert exact["rounded"] == []
    lossy = convert(MODELS / "bitnet-f32-sharded", "i2_s", ConvertOptions(output=tmp_path / "b.gguf", embed_dtype="f16"))
    assert any(line.startswith("token_embd.weight: stored as F16") for line in lossy["rounded"])


def test_tl_tiles_are_recorded_and_a_kernel_config_is_written(tmp_path):
    out = convert(MODELS / "b158-packed", "tl2", ConvertOptions(output=tmp_path / "m.gguf", dialect="bitnet-cpp-2024"))
    from bitpack.containers.gguf_read import GGUFFile

    f = GGUFFile(out["output"])
    params = json.loads(f.kv["bitpack.codec_params"])
    assert params["blk.0.attn_q.weight"] == {"BM": 256, "BK": 96, "bm": 32}
    assert f.ggml_type("blk.0.attn_q.weight").id == 39  # TL2 in the 2024-25 fork
    ini = Path(out["kernel_config"]).read_text()
    assert "[Kernels_0]" in ini and "bmm = 32" in ini
    out26 = convert(MODELS / "b158-packed", "tl2", ConvertOptions(output=tmp_path / "n.gguf"))
    assert GGUFFile(out26["output"]).ggml_type("blk.0.attn_q.weight").id == 42


def test_dialect_that_cannot_run_the_graph_is_refused(tmp_path):
    with pytest.raises(BitpackError, match="does not implement the bitnet-b1.58 graph"):
        convert(MODELS / "b158-packed", "tq2_0", ConvertOptions(output=tmp_path / "m.gguf", dialect="mainline"))
    with pytest.raises(BitpackError, match="has no i2_s type"):
        convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=tmp_path / "m.gguf", dialect="mainline"))


def test_hf_packed_output_is_a_transformers_layout(tmp_path):
    pytest.importorskip("safetensors.numpy")
    out = convert(MODELS / "b158-bf16", "hf_packed", ConvertOptions(output=tmp_path / "hf"))
    folder = Path(out["output"])
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                             "quantization_mode": "offline", "modules_to_not_convert": ["lm_head"]}
    assert config["architectures"] == ["BitNetForCausalLM"]
    assert (folder / "tokenizer.json").is_file()
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", framework="numpy") as f:
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight").shape == (64, 256)
        assert f.get_tensor("model.layers.0.self_attn.q_proj.weight_scale").dtype == np.float32
        assert f.metadata()["format"] == "pt"


def test_bitlinear_source_keeps_its_weight_scale_bits(tmp_path):
    out = convert(MODELS / "llama-packed", "hf_packed",
                  ConvertOptions(output=tmp_path / "hf", scale_convention="divide"))
    from bitpack.containers.safetensors_read import Checkpoint

    new, old = Checkpoint(Path(out["output"])), Checkpoint(MODELS / "llama-packed")
    name = "model.layers.0.mlp.down_proj.weight_scale"
    assert new.info(name).dtype == old.info(name).dtype
    np.testing.assert_array_equal(new.raw(name), old.raw(name))
    assert json.loads((Path(out["output"]) / "config.json").read_text())["quantization_config"]["linear_class"] == "bitlinear"


def test_config_json_as_source_says_to_give_its_folder(tmp_path):
    config = MODELS / "b158-packed" / "config.json"
    with pytest.raises(BitpackError) as err:
        convert(config, "i2_s", ConvertOptions(output=tmp_path / "m.gguf"))
    message = str(err.value)
    assert "is the model's config.json" in message and str(MODELS / "b158-packed") in message
    assert "weight_map" not in message


def test_duplicate_quantization_config_reads_as_transformers_does_and_says_so():
    # transformers' json keeps the last quantization_config, which has no linear_class: bitlinear
    model = open_model(MODELS / "llama-packed")
    assert model.linear_class == "bitlinear"
    assert any("last one wins: bitlinear (divide" in w and "--scale-convention" in w for w in model.warnings)
    assert_same(canonical(model), canonical(open_model(MODELS / "llama-packed", scale_convention="divide")))


def test_duplicate_quantization_config_is_warned_about_once_the_convention_is_given():
    # fixtures/models/README.md promises this warning; the duplicate is never silently collapsed
    model = open_model(MODELS / "llama-packed", scale_convention="divide")
    assert any("'quantization_config' appears 2 times" in w for w in model.warnings), model.warnings


def test_never_writes_over_the_input_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(MODELS / "b158-packed", src)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    with pytest.raises(BitpackError, match="overwrite the input|replace the source|contains the source"):
        convert(src, "hf_packed", ConvertOptions(output=src, overwrite=True))
    with pytest.raises(BitpackError):
        convert(src / "model.safetensors", "i2_s", ConvertOptions(output=src / "model.safetensors", overwrite=True))
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before

    import bitpack.models.gguf_target as target

    calls = {"n": 0}
    real = target._ternary_producer

    def failing(*args, **kwargs):
        produce = real(*args, **kwargs)

        def boom():
            calls["n"] += 1
            if calls["n"] == 3:
                raise BitpackError("simulated failure mid-conversion")
            return produce()

        return boom

    monkeypatch.setattr(target, "_ternary_producer", failing)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(BitpackError, match="simulated"):
        convert(src, "i2_s", ConvertOptions(output=out_dir / "m.gguf"))
    assert list(out_dir.iterdir()) == []  # no partial file, no temporary left behind


def test_default_output_names():
    assert default_output(Path("/m/model-dir"), "i2_s", "gguf") == Path("/m/model-dir-i2_s.gguf")
    assert default_output(Path("/m/model-dir"), "hf_packed", "safetensors") == Path("/m/model-dir-hf_packed")
    assert default_output(Path("/m/x.gguf"), "tl2", "gguf") == Path("/m/x-tl2.gguf")
    assert default_output(Path("/m/d/model.safetensors"), "int8", "safetensors") == Path("/m/d/d-int8")


def test_reverse_direction_from_gguf_to_every_safetensors_layout(tmp_path, sources):
    gguf_out = convert(MODELS / "b158-packed", "tq1_0", ConvertOptions(output=tmp_path / "m.gguf"))
    for target in ("hf_packed", "int8", "i2_packed"):
        out = convert(gguf_out["output"], target, ConvertOptions(output=tmp_path / target))
        assert_same(canonical(open_model(out["output"])), sources["b158-packed"])
        assert not any("tokenizer" in w for w in out["warnings"])  # the GGUF's vocabulary, as HF files
        assert (Path(out["output"]) / "tokenizer.json").is_file()


def test_bf16_weight_scales_are_refused_up_front_unless_allowed(tmp_path, sources):
    # masters' scales f32(1/s_q) are not bf16 values: all of them listed, nothing written
    with pytest.raises(BitpackError, match="scales do not survive as autobitlinear BF16") as err:
        convert(MODELS / "b158-bf16", "hf_packed", ConvertOptions(output=tmp_path / "hf", scale_dtype="bf16"))
    from bitpack.models.floats import round_to

    inexact = sorted(n for n, t in sources["b158-bf16"].items() if hasattr(t, "codes")
                     and (round_to(np.array([t.scale], np.float32), "BF16").astype(np.uint32) << 16).view(np.float32)[0] != t.scale)
    assert str(err.value).startswith(f"{len(inexact)} scales") and inexact[0] in str(err.value)
    assert not (tmp_path / "hf").exists()
    out = convert(MODELS / "b158-bf16", "hf_packed",
                  ConvertOptions(output=tmp_path / "hf", scale_dtype="bf16", allow_scale_rounding=True))
    assert sorted(line.split(":")[0] for line in out["rounded"]) == inexact
    back = canonical(open_model(out["output"]))
    for name, t in sources["b158-bf16"].items():
        if hasattr(t, "codes"):
            np.testing.assert_array_equal(back[name].codes, t.codes)
    # a packed autobitlinear source has bf16 scales already: exact, nothing to allow
    exact = convert(MODELS / "b158-packed", "hf_packed", ConvertOptions(output=tmp_path / "p", scale_dtype="bf16"))
    assert exact["rounded"] == []


def test_packed_weights_without_quantization_config_need_a_scale_convention(tmp_path, sources):
    src = tmp_path / "noqc"
    shutil.copytree(MODELS / "b158-packed", src)
    config = json.loads((src / "config.json").read_text())
    del config["quantization_config"]
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(BitpackError, match="--scale-convention"):
        open_model(src)
    assert_same(canonical(open_model(src, scale_convention="multiply")), sources["b158-packed"])


# Every bundled fixture with a GGUF target it converts to (llama-f16 is full precision: only a
# BitStack stack takes it, written as GGUF with -o x.gguf).
FIXTURE_TO_GGUF = {
    "b158-bf16": ("i2_s", {}),
    "b158-k384-bf16": ("i2_s", {}),
    "b158-packed": ("i2_s", {}),
    "bitnet-f32-sharded": ("tq2_0", {}),
    "llama-packed": ("i2_s", {"scale_convention": "divide"}),
    "llama-f16": ("bitstack", {"params": {"blocks": 2, "rank": 2}}),
}


def test_every_fixture_is_listed_for_the_tokenizer_check():
    assert sorted(FIXTURE_TO_GGUF) == sorted(p.name for p in MODELS.iterdir() if p.is_dir())


@pytest.mark.parametrize("fixture", list(FIXTURE_TO_GGUF))
def test_fixture_tokenizers_convert_to_gguf_without_a_pre_tokenizer_warning(tmp_path, fixture):
    """The README's first demo used to end with "pre-tokenizer not recognised": the byte-level
    BPE fixtures use GPT-2's ByteLevel pre-tokenizer, which llama.cpp knows as "gpt-2"."""
    from bitpack.containers.gguf_read import GGUFFile

    target, options = FIXTURE_TO_GGUF[fixture]
    out = convert(MODELS / fixture, target, ConvertOptions(output=tmp_path / "m.gguf", **options))
    assert not [w for w in out["warnings"] if "pre-tokenizer" in w], out["warnings"]
    kv = GGUFFile(out["output"]).kv
    byte_level = (MODELS / fixture / "tokenizer.json").is_file()
    assert kv["tokenizer.ggml.model"] == ("gpt2" if byte_level else "llama")
    assert kv["tokenizer.ggml.pre"] == ("gpt-2" if byte_level else "default")


def test_a_pre_tokenizer_bitpack_does_not_know_is_still_warned_about(tmp_path):
    # GPT-2's split with a prefix space added is not what llama.cpp's "gpt-2" does
    src = tmp_path / "src"
    shutil.copytree(MODELS / "b158-packed", src)
    doc = json.loads((src / "tokenizer.json").read_text())
    doc["pre_tokenizer"]["add_prefix_space"] = True
    (src / "tokenizer.json").write_text(json.dumps(doc))
    out = convert(src, "i2_s", ConvertOptions(output=tmp_path / "m.gguf"))
    assert any("pre-tokenizer not recognised" in w for w in out["warnings"]), out["warnings"]


def test_the_legacy_prism_dialect_is_read_never_written(tmp_path):
    with pytest.raises(BitpackError, match="never writes them.*pq2_0 \\(id 142"):
        convert(MODELS / "b158-packed", "pq2_0", ConvertOptions(output=tmp_path / "m.gguf", dialect="prism-legacy"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target", ["i2_s", "int8", "bitstack"])
def test_outputs_record_no_local_path(tmp_path, target):
    """bitpack.source says what the source was (its name and the files read), never where it sat
    on this machine: a published output must not carry the converter's folders."""
    import json

    from bitpack.containers.gguf_read import GGUFFile
    from bitpack.containers.safetensors_read import Checkpoint

    src = MODELS / ("llama-f16" if target == "bitstack" else "b158-packed")
    out = convert(src, target, ConvertOptions(output=tmp_path / ("o.gguf" if target == "i2_s" else "o"),
                                              params={"blocks": 2} if target == "bitstack" else {}))["output"]
    if target == "i2_s":
        with GGUFFile(out) as f:
            recorded = f.kv["bitpack.source"]
    else:
        recorded = Checkpoint(Path(out)).metadata["bitpack.source"]
    source = json.loads(recorded)
    assert str(MODELS) not in recorded and str(tmp_path) not in recorded and "path" not in source
    assert source["name"] == src.name and "config.json" in source["files"]


@pytest.mark.parametrize("layout", ["arm", "x86_1x4"])
def test_an_i2_s_layout_is_recorded_and_read_back(tmp_path, layout):
    """A published (x86) I2_S file converted for ARM builds: the layout is in the file's
    bitpack.codec_params, so bitpack reads the codes back exactly (nothing in the bytes says it)."""
    x86 = convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=tmp_path / "x86.gguf"))["output"]
    arm = convert(x86, "i2_s", ConvertOptions(output=tmp_path / f"{layout}.gguf", params={"layout": layout}))["output"]
    assert Path(arm).read_bytes() != Path(x86).read_bytes()
    assert verify(x86, arm)["identical"] is True


@pytest.mark.parametrize(("source", "target"), [("b158-bf16", "tq2_0"), ("b158-bf16", "tq1_0"),
                                                ("b158-bf16", "i2_s"), ("bitnet-f32-sharded", "tq2_0"),
                                                ("bitnet-f32-sharded", "tl2")])
def test_a_model_converted_in_parts_is_the_model_converted_whole(tmp_path, monkeypatch, source, target):
    """Master projections whose target's rows are byte ranges (TQ), and float tensors, are
    converted a block of rows at a time; the bytes are those of whole-tensor conversion."""
    from bitpack import parallel
    from bitpack.models.gguf_target import plan_gguf

    options = {"allow_scale_rounding": (source, target) in NEEDS_ROUNDING}
    written, split = {}, {}
    for part_weights in (1 << 30, 1000):  # whole, then blocks of 3 rows of 256
        monkeypatch.setattr(parallel, "PART_WEIGHTS", part_weights)
        out = tmp_path / f"out-{part_weights}.gguf"
        convert(MODELS / source, target, ConvertOptions(output=out, receipt=False, **options))
        written[part_weights] = out.read_bytes()
        plan = plan_gguf(open_model(MODELS / source), target, **options)
        split[part_weights] = {t.name for t in plan.tensors if t.parts}
    assert written[1000] == written[1 << 30]
    assert not split[1 << 30]
    assert "token_embd.weight" in split[1000]
    assert ("blk.0.attn_q.weight" in split[1000]) == (target != "tl2")


def test_a_master_that_fails_in_a_part_names_the_tensor_and_rows(tmp_path, monkeypatch):
    from bitpack import parallel
    from bitpack.containers.safetensors_read import Checkpoint

    monkeypatch.setattr(parallel, "PART_WEIGHTS", 2560)  # ten rows of 256 at a time
    src = tmp_path / "src"
    shutil.copytree(MODELS / "bitnet-f32-sharded", src)
    name = "model.layers.0.mlp.up_proj.weight"
    ckpt = Checkpoint(src)
    shard, info = ckpt.shard_of(name).path, ckpt.info(name)
    ckpt.close()
    with open(shard, "r+b") as fh:  # one NaN in row 23
        fh.seek(info.offset + (23 * info.shape[1] + 5) * 4)
        fh.write(np.array([np.nan], dtype="<f4").tobytes())
    out = tmp_path / "out.gguf"
    with pytest.raises(BitpackError, match=r"blk.0.ffn_up.weight, rows 0-9: master weights hold NaN"):
        convert(src, "tq2_0", ConvertOptions(output=out, receipt=False, allow_degenerate=True))
    assert not out.exists()
