"""Checks of the generated Ternary-Bonsai-shaped Qwen3 fixtures (fixtures/make_qwen3_fixtures.py).

The fixtures are not committed (about 17 MB): tests generate them into a temporary folder, which
takes well under a second. Another test module gets them the same way:

    import importlib.util
    from pathlib import Path

    def make_qwen3(out_dir):
        path = Path(__file__).resolve().parents[1] / "fixtures" / "make_qwen3_fixtures.py"
        spec = importlib.util.spec_from_file_location("make_qwen3_fixtures", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.make(out_dir)  # {"qwen3-tied-unpacked": Path, "qwen3-tied-F16": Path, ...}

    @pytest.fixture(scope="module")
    def qwen3(tmp_path_factory):
        return make_qwen3(tmp_path_factory.mktemp("qwen3"))

The NumPy-level checks here read the files with their own code (a safetensors header parser, the
block layout of formats-2026.md §3) or with gguf-py; transformers and llama.cpp are oracles.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from oracles import llama_cpp_logits, qwen3_logits, require

ROOT = Path(__file__).resolve().parents[1]
from conftest import GENERATOR, make_qwen3  # noqa: F401 - the qwen3 and expected fixtures live there

VARIANTS = ("qwen3-tied", "qwen3-untied", "qwen3-yarn")
LAYERS, HIDDEN, FFN, VOCAB, HEAD_DIM, GROUP = 2, 256, 384, 320, 64, 128
TOKENS = [317, 5, 250, 13, 99, 1, 0, 255, 128, 64, 32, 16, 8, 300, 11]  # 317 = <|endoftext|>
TEXTS = (
    "The model weight, ternary scale.\nZebra 42 h\u00e9llo  world! \U0001f600",
    "<|im_start|>user\nCan't we   tab\there?<|im_end|>\n",
    "",
)


def ternary_names(variant: str) -> list[str]:
    roles = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    names = ["token_embd.weight"] + [f"blk.{i}.{r}.weight" for i in range(LAYERS) for r in roles]
    return names + ([] if variant != "qwen3-untied" else ["output.weight"])


def dequantize(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    m, k = codes.shape
    return (codes.reshape(m, k // GROUP, GROUP) * scale[:, :, None]).reshape(m, k).astype(np.float32)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F16", name  # torch_dtype float16: every tensor, norms included
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b : 8 + n + e], dtype="<f2").reshape(info["shape"])
    return out


# ----------------------------------------------------------------------------- generator


def test_generator_is_reproducible(qwen3, tmp_path):
    again = make_qwen3(tmp_path)
    assert again.keys() == qwen3.keys()
    first_root, second_root = qwen3["expected"].parent, again["expected"].parent
    first = sorted(p.relative_to(first_root) for p in first_root.rglob("*") if p.is_file())
    second = sorted(p.relative_to(second_root) for p in second_root.rglob("*") if p.is_file())
    assert first == second and len(first) == 3 * 7 + 1
    for rel in first:
        assert (first_root / rel).read_bytes() == (second_root / rel).read_bytes(), rel


def test_expected_tensors_and_planted_cases(expected):
    assert sorted(expected) == sorted(f"{v}/{n}/{a}" for v in VARIANTS for n in ternary_names(v)
                                      for a in ("codes", "scale"))
    zero_groups = full_groups = zero_rows = 0
    for v in VARIANTS:
        for name in ternary_names(v):
            codes, scale = expected[f"{v}/{name}/codes"], expected[f"{v}/{name}/scale"]
            m, k = codes.shape
            assert codes.dtype == np.int8 and set(np.unique(codes)) <= {-1, 0, 1}
            assert scale.dtype == np.float32 and scale.shape == (m, k // GROUP)
            assert 0.3 < (codes == 0).mean() < 0.37, name  # about a third zeros
            groups = codes.reshape(m, k // GROUP, GROUP)
            empty = ~groups.any(axis=2)
            # normal form (formats-2026.md §7.2): scale +0 exactly where a group is all zero
            assert np.array_equal(scale == 0, empty) and not np.signbit(scale).any()
            assert np.array_equal(scale.astype(np.float16).astype(np.float32), scale)  # f16-exact
            for row in scale:  # neighbouring groups never share a scale
                nonzero = row[row > 0]
                assert len(set(nonzero.tolist())) == len(nonzero)
            zero_groups += int(empty.sum())
            full_groups += int((groups != 0).all(axis=2).sum())
            zero_rows += int((~codes.any(axis=1)).sum())
    assert zero_groups >= 3 * 3 + 3 and full_groups >= 3 * 3 + 1 and zero_rows == 3


def test_tied_and_yarn_share_weights_untied_adds_a_head(expected):
    for name in ternary_names("qwen3-tied"):
        for part in ("codes", "scale"):
            a = expected[f"qwen3-tied/{name}/{part}"]
            assert np.array_equal(a, expected[f"qwen3-yarn/{name}/{part}"])
            assert np.array_equal(a, expected[f"qwen3-untied/{name}/{part}"])
    head, embd = (expected[f"qwen3-untied/{n}.weight/codes"] for n in ("output", "token_embd"))
    assert (head != embd).mean() > 0.5


# ----------------------------------------------------------------------------- HF checkpoint


@pytest.mark.parametrize("variant", VARIANTS)
def test_safetensors_hold_the_expected_weights(qwen3, expected, variant):
    tensors = read_safetensors(qwen3[f"{variant}-unpacked"] / "model.safetensors")
    assert len(tensors) == 11 * LAYERS + 2 + (variant == "qwen3-untied")
    hf = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight"}
    roles = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    for name in ternary_names(variant):
        if name.startswith("blk."):
            _, i, role, _ = name.split(".")
            hf[name] = f"model.layers.{i}.{roles[role]}.weight"
        want = dequantize(expected[f"{variant}/{name}/codes"], expected[f"{variant}/{name}/scale"])
        np.testing.assert_array_equal(tensors[hf[name]].astype(np.float32), want, err_msg=name)
    norm = tensors["model.layers.0.self_attn.q_norm.weight"]
    assert norm.shape == (HEAD_DIM,) and 0.05 < norm.astype(np.float32).std() < 0.2


@pytest.mark.parametrize("variant", VARIANTS)
def test_config(qwen3, variant):
    folder = qwen3[f"{variant}-unpacked"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen3ForCausalLM"] and cfg["model_type"] == "qwen3"
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (HIDDEN, FFN, LAYERS)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, HEAD_DIM)
    assert (cfg["vocab_size"], cfg["rms_norm_eps"], cfg["rope_theta"]) == (VOCAB, 1e-6, 1_000_000)
    assert cfg["tie_word_embeddings"] == (variant != "qwen3-untied")
    assert cfg["torch_dtype"] == "float16" and cfg["max_position_embeddings"] == 4096
    assert cfg["attention_bias"] is False and cfg["use_sliding_window"] is False
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}
    assert cfg["rope_scaling"] == (yarn if variant == "qwen3-yarn" else None)
    gen = json.loads((folder / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (317, [319, 317], 317)


def test_tokenizer_round_trips(qwen3):
    tokenizers = require("tokenizers")
    folder = qwen3["qwen3-tied-unpacked"]
    tok = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB
    assert [tok.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [317, 318, 319]
    doc = json.loads((folder / "tokenizer.json").read_text())
    split, byte_level = doc["pre_tokenizer"]["pretokenizers"]
    assert split["type"] == "Split" and split["pattern"]["Regex"].startswith("(?i:'s|'t|'re|'ve|'m|'ll|'d)")
    assert byte_level == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                          "use_regex": False}
    for text in TEXTS:
        ids = tok.encode(text).ids  # no BOS: Qwen adds none (add_bos_token false)
        assert tok.decode(ids, skip_special_tokens=False) == text
        assert len(ids) <= len(text.encode())
    ids = tok.encode(TEXTS[1]).ids
    assert ids[0] == 318 and 319 in ids  # special tokens are matched whole
    assert len(tok.encode(TEXTS[0]).ids) < len(TEXTS[0].encode()) - 10  # merges are used


# ----------------------------------------------------------------------------- GGUF


def fields(reader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


@functools.cache
def gguf_reader_classes():
    gguf = require("gguf")

    class HeaderReader(gguf.GGUFReader):
        """gguf-py's reader without its tensor step: PyPI gguf 0.19 does not know type id 42
        (formats-2026.md §2), so the tensor infos of the legacy file are read raw."""

        def _build_tensors(self, start_offs, fields):
            self.infos = []
            for field in fields:
                _, name, _, dims, dtype, offset = field.parts
                self.infos.append((bytes(name).decode(), tuple(int(d) for d in dims), int(dtype[0]),
                                   int(start_offs + offset[0])))

    return gguf.GGUFReader, HeaderReader


def check_common_keys(kv: dict, variant: str) -> None:
    """qwen3.md §1.1 and §5.1; the tokenizer keys of the converter's gpt2 vocabulary."""
    assert kv["general.architecture"] == "qwen3"
    hp = {"block_count": LAYERS, "context_length": 4096, "embedding_length": HIDDEN,
          "feed_forward_length": FFN, "attention.head_count": 4, "attention.head_count_kv": 2,
          "attention.key_length": HEAD_DIM, "attention.value_length": HEAD_DIM}
    for key, value in hp.items():
        assert kv[f"qwen3.{key}"] == value, key
    assert kv["qwen3.rope.freq_base"] == 1e6
    assert kv["qwen3.attention.layer_norm_rms_epsilon"] == np.float32(1e-6)
    yarn = {k: v for k, v in kv.items() if k.startswith("qwen3.rope.scaling.")}
    if variant == "qwen3-yarn":
        assert yarn == {"qwen3.rope.scaling.type": "yarn", "qwen3.rope.scaling.factor": 4.0,
                        "qwen3.rope.scaling.original_context_length": 1024}
    else:
        assert yarn == {}
    assert (kv["tokenizer.ggml.model"], kv["tokenizer.ggml.pre"]) == ("gpt2", "qwen2")
    assert len(kv["tokenizer.ggml.tokens"]) == VOCAB and kv["tokenizer.ggml.tokens"][317] == "<|endoftext|>"
    assert kv["tokenizer.ggml.token_type"] == [1] * 317 + [3] * 3
    assert len(kv["tokenizer.ggml.merges"]) == VOCAB - 256 - 3
    ids = [kv[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "padding")]
    assert ids == [317, 319, 317] and kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["general.quantization_version"] == 2


def hf_shape(name: str, variant: str, expected: dict) -> tuple[int, ...] | None:
    key = f"{variant}/{name}/codes"
    return expected[key].shape if key in expected else None


@pytest.mark.parametrize("variant", VARIANTS)
def test_f16_gguf(qwen3, expected, variant):
    reader_cls, _ = gguf_reader_classes()
    reader = reader_cls(qwen3[f"{variant}-F16"])
    kv = fields(reader)
    check_common_keys(kv, variant)
    assert kv["general.file_type"] == 1
    assert len(reader.tensors) == 11 * LAYERS + 2 + (variant == "qwen3-untied")
    norms = read_safetensors(qwen3[f"{variant}-unpacked"] / "model.safetensors")
    for t in reader.tensors:
        shape = hf_shape(t.name, variant, expected)
        if shape is None:  # a norm: F32, one dimension
            assert t.tensor_type.name == "F32" and len(t.shape) == 1, t.name
            assert t.shape[0] in (HIDDEN, HEAD_DIM)
            continue
        assert t.tensor_type.name == "F16" and tuple(int(d) for d in t.shape) == shape[::-1], t.name
        want = dequantize(expected[f"{variant}/{t.name}/codes"], expected[f"{variant}/{t.name}/scale"])
        np.testing.assert_array_equal(np.asarray(t.data, dtype=np.float32), want, err_msg=t.name)
    output_norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
    np.testing.assert_array_equal(output_norm.data, norms["model.norm.weight"].astype(np.float32))


def decode_legacy_q2_0(data: bytes, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """formats-2026.md §3: 34-byte blocks, f16 d first, weight j at bits 2*(j % 4) of byte j // 4."""
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(m, k // GROUP, 34)
    d = blocks[..., :2].copy().view("<f2")[..., 0].astype(np.float32)
    qs = blocks[..., 2:]
    codes = np.stack([(qs >> (2 * i)) & 3 for i in range(4)], axis=-1).reshape(m, k)
    assert not (codes == 3).any()
    return codes.astype(np.int8) - 1, d


@pytest.mark.parametrize("variant", VARIANTS)
def test_legacy_q2_0_gguf(qwen3, expected, variant):
    _, header_reader = gguf_reader_classes()
    path = qwen3[f"{variant}-Q2_0-legacy"]
    reader = header_reader(path)
    kv = fields(reader)
    check_common_keys(kv, variant)
    assert kv["general.file_type"] == 41  # the `prism` branch's MOSTLY_Q2_0 (formats-2026.md §3)
    raw = path.read_bytes()
    f16_names = [t.name for t in gguf_reader_classes()[0](qwen3[f"{variant}-F16"]).tensors]
    assert [name for name, *_ in reader.infos] == f16_names  # same tensors, same order
    offset = reader.data_offset
    for name, ne, ggml_type, start in reader.infos:
        assert start == offset, name  # consecutive group-128 spans, alignment 32 (formats-2026.md §9.1)
        shape = hf_shape(name, variant, expected)
        if shape is None:
            assert ggml_type == 0 and len(ne) == 1
            size = 4 * ne[0]
        else:
            assert ggml_type == 42 and ne == shape[::-1], name
            size = 34 * shape[0] * shape[1] // GROUP
            codes, d = decode_legacy_q2_0(raw[start : start + size], *shape)
            np.testing.assert_array_equal(codes, expected[f"{variant}/{name}/codes"], err_msg=name)
            np.testing.assert_array_equal(d, expected[f"{variant}/{name}/scale"], err_msg=name)
        offset += size + (-size % 32)
    assert offset == len(raw)
    # the planted all-zero group of token_embd (row 300, group 0) is written 00 00 | 55 x 32
    embd = next(start for name, _, _, start in reader.infos if name == "token_embd.weight")
    block = embd + (300 * HIDDEN // GROUP + 0) * 34
    assert raw[block : block + 34] == b"\0\0" + b"\x55" * 32


# ----------------------------------------------------------------------------- oracles


@functools.cache
def hf_logits(folder: Path) -> np.ndarray:
    return qwen3_logits(folder, TOKENS)


def llama_logits(path: Path) -> np.ndarray:
    return llama_cpp_logits(path, TOKENS)


@pytest.mark.oracle
@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_loads_the_checkpoint(qwen3, variant):
    transformers = require("transformers")
    folder = qwen3[f"{variant}-unpacked"]
    config = transformers.AutoConfig.from_pretrained(folder)
    rope = dict(config.rope_parameters)
    if variant == "qwen3-yarn":  # the legacy rope_scaling key is what Qwen3Config reads
        assert rope["rope_type"] == "yarn" and rope["factor"] == 4.0
        assert rope["original_max_position_embeddings"] == 1024
    else:
        assert rope["rope_type"] == "default"
    assert rope["rope_theta"] == 1e6
    logits = hf_logits(folder)
    assert logits.shape == (len(TOKENS), VOCAB) and np.isfinite(logits).all()
    assert 1.0 < np.abs(logits).max() < 20.0  # O(1-10): the planted scales keep activations sane
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert tok.decode(tok(TEXTS[1])["input_ids"]) == TEXTS[1]


@pytest.mark.oracle
@pytest.mark.parametrize("variant", VARIANTS)
def test_llama_cpp_runs_the_f16_gguf_like_transformers(qwen3, variant):
    """llama.cpp computes the F16 matmuls with f16-rounded activations and an F16 KV cache
    (qwen3.md §6), so it agrees with transformers' float32 run only closely: measured
    max|diff| / max|logit| = 3.5e-4 (tied), 6.1e-4 (untied), 4.2e-4 (yarn), every argmax equal."""
    reference = hf_logits(qwen3[f"{variant}-unpacked"])
    logits = llama_logits(qwen3[f"{variant}-F16"])
    relative = np.abs(logits - reference).max() / np.abs(reference).max()
    print(f"{variant}: llama.cpp vs transformers {relative:.2e}")
    assert relative < 5e-3, relative
    assert (logits.argmax(-1) == reference.argmax(-1)).all()
    if variant == "qwen3-yarn":
        # same weights as qwen3-tied: the YaRN keys change the logits far more than the runtimes
        # differ, so llama.cpp really read qwen3.rope.scaling.* (qwen3.md §5.1)
        plain = hf_logits(qwen3["qwen3-tied-unpacked"])
        assert np.abs(plain - reference).max() / np.abs(reference).max() > 20 * relative


@pytest.mark.oracle
def test_llama_cpp_refuses_the_legacy_q2_0_file(qwen3, capfd):
    """Mainline reads id 42 as group 64 (formats-2026.md §9.3) and stops at the first offset that
    does not fit: after token_embd (320 x 256), 21,760 bytes in group 128 against 23,040."""
    llama_cpp = require("llama_cpp")
    with pytest.raises(ValueError, match="Failed to load model"):
        llama_cpp.Llama(model_path=str(qwen3["qwen3-tied-Q2_0-legacy"]), n_ctx=64, n_threads=2, verbose=True)
    err = capfd.readouterr().err
    assert "has offset 21760, expected 23040" in err, err[-2000:]
