"""Hostile inputs to the models layer: every one is refused with exit code 2 and one line,
before any output exists (DESIGN.md, command line contract). One test per finding of the
models fuzz campaign (R1-R14, unknown architectures, the bitlinear default)."""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack
from fuzz_models import MODELS, base_gguf, read_gguf

from bitpack.errors import BitpackError

DEEP = "[" * 100_000 + "]" * 100_000


def hf_dir(tmp_path: Path, base: str = "b158-bf16", raw: dict[str, str] | None = None, **changes) -> Path:
    """A copy of fixture ``base`` with config.json fields changed (``raw``: spliced in as JSON text)."""
    dst = tmp_path / base
    shutil.copytree(MODELS / base, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    text = json.dumps(config)
    for i, (key, value) in enumerate((raw or {}).items()):
        config[key] = f"@@{i}"
        text = json.dumps(config).replace(f'"@@{i}"', value)
    (dst / "config.json").write_text(text)
    return dst


def refused(tmp_path: Path, src: Path, *words: str, to: str = "i2_s") -> str:
    """Convert ``src``; assert exit 2, one line naming ``words``, no output, in seconds."""
    out = tmp_path / f"out.{to}"
    t0 = time.perf_counter()
    done = bitpack("convert", src, "--to", to, "-o", out)
    assert time.perf_counter() - t0 < 10
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("bitpack: error")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    return lines[0]


# -- R1, R2, R14: config.json fields ---------------------------------------------------------
@pytest.mark.parametrize("key, value", [
    ("hidden_size", "256"), ("num_hidden_layers", [2]), ("intermediate_size", 2.5),
    ("num_attention_heads", {}), ("tie_word_embeddings", "yes"), ("hidden_act", 5),
    ("num_attention_heads", 0), ("vocab_size", 0), ("num_key_value_heads", 3),
    ("bos_token_id", "<s>"), ("head_dim", 3.4e38),
])
def test_config_field_of_wrong_type_or_range(tmp_path, key, value):
    refused(tmp_path, hf_dir(tmp_path, **{key: value}), "config.json", key)


@pytest.mark.parametrize("key, text", [
    ("rms_norm_eps", "NaN"), ("rope_theta", "Infinity"), ("rope_theta", "-Infinity"),
    ("vocab_size", "1e999"), ("hidden_size", "1e999"),
])
def test_config_non_finite_numbers(tmp_path, key, text):
    refused(tmp_path, hf_dir(tmp_path, raw={key: text}), "config.json", key)


# -- R4: layer counts the tensors do not back --------------------------------------------------
@pytest.mark.parametrize("layers", [3, 4096, 10**6])
def test_layer_count_not_backed_by_tensors(tmp_path, layers):
    refused(tmp_path, hf_dir(tmp_path, num_hidden_layers=layers), "num_hidden_layers")


# -- R5: nesting ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json"])
def test_deeply_nested_json(tmp_path, name):
    src = hf_dir(tmp_path)
    (src / name).write_text(DEEP)
    refused(tmp_path, src, name, "nested")


# -- R8: quantization_config not an object -----------------------------------------------------
@pytest.mark.parametrize("value", [["bitnet"], "bitnet", 7])
def test_quantization_config_not_an_object(tmp_path, value):
    refused(tmp_path, hf_dir(tmp_path, "b158-packed", quantization_config=value), "quantization_config")


# -- R9, R10, R11: tensors against the config --------------------------------------------------
def retag(path: Path, name: str, **changes) -> None:
    """Change one tensor's header entry in a safetensors file, keeping the header's length."""
    blob = bytearray(path.read_bytes())
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    header[name].update(changes)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    blob[8 : 8 + n] = text + b" " * (n - len(text))
    path.write_bytes(bytes(blob))


def test_master_shapes_checked_against_config_before_work(tmp_path):
    refused(tmp_path, hf_dir(tmp_path, intermediate_size=1024), "gate_proj", "[1024, 256]")


def test_non_float_master_projection(tmp_path):
    src = hf_dir(tmp_path)
    retag(src / "model.safetensors", "model.layers.1.mlp.down_proj.weight", dtype="U16")
    refused(tmp_path, src, "down_proj", "U16")


def test_empty_weight_scale(tmp_path):
    """R11: a well-formed file (no gap, no overlap) whose weight_scale has shape [0]."""
    from bitpack.containers.safetensors_read import SafetensorsFile
    from bitpack.containers.safetensors_write import SafetensorsWriter

    src = hf_dir(tmp_path, "b158-packed")
    st = src / "model.safetensors"
    name = "model.layers.0.mlp.up_proj.weight_scale"
    f = SafetensorsFile(st)
    arrays = {n: (np.zeros(0, np.float32) if n == name else f.array(n)) for n in f.names()}
    dtypes = {n: ("F32" if n == name else f.info(n).dtype) for n in f.names()}
    out = tmp_path / "rewritten.safetensors"
    with SafetensorsWriter(out, metadata=f.metadata) as w:
        for n, a in arrays.items():
            w.add(n, dtypes[n], a.shape)
        for n, a in arrays.items():
            w.write(n, a if dtypes[n] != "BF16" else f.raw(n))
    out.replace(st)
    assert SafetensorsFile(st).info(name).shape == (0,)  # the container accepts it: the model must not
    refused(tmp_path, src, "weight_scale")


# -- R12: tokenizer files ---------------------------------------------------------------------
def _tok(src: Path, name: str, edit) -> None:
    data = json.loads((src / name).read_text())
    edit(data)
    (src / name).write_text(json.dumps(data))


@pytest.mark.parametrize("case", ["model_list", "added_ids", "chat_template", "vocab_json", "merges",
                                  "tokenizer_model", "top_level_list"])
def test_damaged_tokenizer_refused_before_weights(tmp_path, case):
    base = "bitnet-f32-sharded" if case == "tokenizer_model" else "b158-bf16"
    src = hf_dir(tmp_path, base)
    if case == "model_list":
        _tok(src, "tokenizer.json", lambda d: d.update(model=[1, 2]))
    elif case == "added_ids":
        _tok(src, "tokenizer.json", lambda d: d["added_tokens"].append({"id": "x", "content": "<zz>"}))
    elif case == "chat_template":
        _tok(src, "tokenizer_config.json", lambda d: d.update(chat_template=[1, 2]))
    elif case == "vocab_json":
        (src / "vocab.json").write_text('{"a": "b", "c": [1]}')
    elif case == "merges":
        _tok(src, "tokenizer.json", lambda d: d["model"].update(merges=[[1, 2]]))
    elif case == "tokenizer_model":
        blob = (src / "tokenizer.model").read_bytes()
        (src / "tokenizer.model").write_bytes(blob[: len(blob) // 3])
    else:
        (src / "tokenizer_config.json").write_text("[1, 2]")
    refused(tmp_path, src, str(src))


# -- unknown architectures --------------------------------------------------------------------
def test_unknown_architecture_refused_and_override(tmp_path):
    src = hf_dir(tmp_path, architectures=["FooBarForCausalLM"], model_type="foobar")
    refused(tmp_path, src, "FooBarForCausalLM", "foobar")
    from bitpack.models.hf_source import open_hf

    model = open_hf(src, architecture="bitnet-b1.58")
    assert model.arch.name == "bitnet-b1.58"
    with pytest.raises(BitpackError, match="nonesuch"):
        open_hf(src, architecture="nonesuch")


# -- GGUF hyper-parameters (R2, R3, R4, R5, R7, R13) -------------------------------------------
@pytest.fixture(scope="module")
def gguf_base(tmp_path_factory):
    return read_gguf(base_gguf(tmp_path_factory.mktemp("gguf-base")))


def gguf_with(base, out: Path, changes: dict, tensors: dict | None = None) -> Path:
    import gguf

    kv, tens = base
    writer = gguf.GGUFWriter(out, "unused")
    writer.kv_data[0].clear()
    for key, value, vtype, sub in kv:
        if key in changes:
            if changes[key] is None:
                continue
            value, vtype, sub = changes[key]
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for name, data, _shape, qtype in tens:
        writer.add_tensor(name, (tensors or {}).get(name, data), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _t():
    import gguf

    return gguf.GGUFValueType


@pytest.mark.parametrize("key, value, words", [
    ("bitnet.attention.head_count", lambda T: (0, T.UINT32, None), ["head_count"]),
    ("bitnet.block_count", lambda T: ("2", T.STRING, None), ["block_count"]),
    ("bitnet.embedding_length", lambda T: ([256, 256], T.ARRAY, T.UINT32), ["embedding_length"]),
    ("bitnet.attention.layer_norm_rms_epsilon", lambda T: (float("nan"), T.FLOAT32, None), ["epsilon"]),
    ("tokenizer.ggml.bos_token_id", lambda T: ("1", T.STRING, None), ["bos_token_id"]),
    ("tokenizer.ggml.eos_token_id", lambda T: ([1, 2], T.ARRAY, T.INT32), ["eos_token_id"]),
    ("bitnet.block_count", lambda T: (2**31, T.UINT32, None), ["block_count"]),
    ("bitnet.block_count", lambda T: (2, T.UINT32, None), ["block_count", "1 layer"]),
    ("bitpack.codec_params", lambda T: (7, T.UINT32, None), ["codec_params"]),
    ("bitpack.codec_params", lambda T: (DEEP, T.STRING, None), ["codec_params", "nested"]),
    ("tokenizer.ggml.tokens", lambda T: ([1, 2], T.ARRAY, T.INT32), ["tokenizer.ggml.tokens"]),
])
def test_gguf_metadata_refused(tmp_path, gguf_base, key, value, words):
    src = gguf_with(gguf_base, tmp_path / "bad.gguf", {key: value(_t())})
    refused(tmp_path, src, *words)


def test_gguf_norm_shape_checked_against_hparams(tmp_path, gguf_base):
    src = gguf_with(gguf_base, tmp_path / "bad.gguf", {},
                    tensors={"output_norm.weight": np.ones(128, dtype=np.float32)})
    refused(tmp_path, src, "output_norm.weight", "[256]")


# -- the default linear class holds the scale exactly ------------------------------------------
def test_default_linear_class_holds_scales_exactly(tmp_path):
    from bitpack.models.hf_target import plan_hf
    from bitpack.pipelines.convert import ConvertOptions, convert
    from bitpack.pipelines.open import open_model

    mid = tmp_path / "a.gguf"
    convert(MODELS / "llama-packed", "i2_s", ConvertOptions(output=mid, scale_convention="divide"))
    model = open_model(mid, progress=False)
    odd = np.float32(0.022099053487181664)  # f32(1 / f32(1 / odd)) != odd
    assert np.float32(1) / (np.float32(1) / odd) != odd
    for e in model.ternary:
        e.__dict__["_scale"] = odd
    plan = plan_hf(model, "hf_packed")
    assert plan.config["quantization_config"]["linear_class"] == "autobitlinear"
    with pytest.raises(BitpackError, match="bitlinear"):
        plan_hf(model, "hf_packed", linear_class="bitlinear")


def test_the_command_line_names_the_architecture_of_an_unknown_class(tmp_path):
    from cli_runner import bitpack

    src = hf_dir(tmp_path, architectures=["FooBarForCausalLM"], model_type="foobar")
    refused_once = bitpack("inspect", src)
    assert refused_once.returncode == 2 and "FooBarForCausalLM" in refused_once.stderr
    shown = bitpack("inspect", src, "--architecture", "bitnet-b1.58", "--json")
    assert shown.returncode == 0, shown.stderr
    done = bitpack("convert", src, "--to", "i2_s", "-o", tmp_path / "o.gguf", "--architecture", "bitnet-b1.58")
    assert done.returncode == 0, done.stderr
