"""Checks of the committed model fixtures (fixtures/models/, made by fixtures/make_model_fixtures.py).

These tests are NumPy-level and independent of bitpack: they parse safetensors headers and
the SentencePiece protobuf themselves, unpack hf_packed weights with their own code, and
re-ternarize the stored master weights. `safetensors`, `tokenizers` and `sentencepiece` are
used only for extra checks when they are installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
GENERATOR = ROOT / "fixtures" / "make_model_fixtures.py"

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1}
ROLES = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)

# model -> (hidden, intermediate, layers, heads, kv heads, sub-norm names or None, layout)
MODEL_SPECS = {
    "b158-bf16": (256, 512, 2, 4, 2, ("self_attn.attn_sub_norm", "mlp.ffn_sub_norm"), "masters"),
    "b158-packed": (256, 512, 2, 4, 2, ("self_attn.attn_sub_norm", "mlp.ffn_sub_norm"), "autobitlinear"),
    "bitnet-f32-sharded": (256, 512, 1, 4, 4, ("self_attn.inner_attn_ln", "mlp.ffn_layernorm"), "masters"),
    "llama-packed": (256, 512, 2, 4, 2, None, "bitlinear"),
    "b158-k384-bf16": (384, 768, 1, 6, 2, ("self_attn.attn_sub_norm", "mlp.ffn_sub_norm"), "masters"),
}
MASTER_MODELS = [m for m, spec in MODEL_SPECS.items() if spec[-1] == "masters"]
PACKED_MODELS = [m for m, spec in MODEL_SPECS.items() if spec[-1] != "masters"]


def _generator():
    spec = importlib.util.spec_from_file_location("make_model_fixtures", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Where the generator planted exact rounding ties and one-ulp scales: its own tables.
_GENERATOR = _generator()
TIE_TENSORS = _GENERATOR.TIE_TENSORS
SCALE_ULP_TENSORS = _GENERATOR.SCALE_ULP_TENSORS

# ----------------------------------------------------------------------------- helpers


def bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_rne(x) -> np.ndarray:
    u = np.asarray(x, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return header, 8 + n


def read_safetensors(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (dtype, array); BF16 is widened exactly to float32."""
    header, base = read_header(path)
    raw = path.read_bytes()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b : base + e]
        dt = info["dtype"]
        if dt == "BF16":
            arr = bf16_to_f32(np.frombuffer(buf, dtype="<u2"))
        else:
            arr = np.frombuffer(buf, dtype={"F32": "<f4", "F16": "<f2", "U8": "u1", "I8": "i1"}[dt])
        out[name] = (dt, arr.reshape(info["shape"]))
    return out


def model_tensors(model: str) -> dict[str, tuple[str, np.ndarray]]:
    out = {}
    for f in sorted((MODELS / model).glob("*.safetensors")):
        out.update(read_safetensors(f))
    return out


def unpack_hf(packed: np.ndarray) -> np.ndarray:
    """codecs.md §3: bit pair i of byte [r, k] is logical row i*R + r, code t + 1."""
    codes = np.concatenate([(packed >> (2 * i)) & 3 for i in range(4)], axis=0).astype(np.int8)
    assert not (codes == 3).any(), "invalid code 3"
    return codes - 1


def ternarize(w: np.ndarray):
    w = np.ascontiguousarray(w, dtype=np.float32)
    a = np.float32(np.float64(np.add.reduce(np.abs(w).reshape(-1), dtype=np.float32)) / w.size)
    s_q = np.float32(1.0) / np.maximum(a, np.float32(1e-5))
    y = (w * s_q).astype(np.float32)
    return np.clip(np.rint(y), -1, 1).astype(np.int8), np.float32(np.float32(1.0) / s_q), a, y


@pytest.fixture(scope="module")
def expected():
    with np.load(MODELS / "expected.npz") as z:
        return {k: z[k] for k in z.files}


def proj_names(model: str) -> list[str]:
    layers = MODEL_SPECS[model][2]
    return [f"model.layers.{i}.{r}.weight" for i in range(layers) for r in ROLES]


def logical_shape(model: str, role: str) -> tuple[int, int]:
    h, f, _, n_h, n_kv, _, _ = MODEL_SPECS[model]
    d = h // n_h
    return {
        "self_attn.q_proj": (n_h * d, h),
        "self_attn.k_proj": (n_kv * d, h),
        "self_attn.v_proj": (n_kv * d, h),
        "self_attn.o_proj": (h, n_h * d),
        "mlp.gate_proj": (f, h),
        "mlp.up_proj": (f, h),
        "mlp.down_proj": (h, f),
    }[role]


def tokenizer_size(model: str) -> int:
    d = MODELS / model
    if (d / "tokenizer.json").exists():
        tj = json.loads((d / "tokenizer.json").read_text())
        ids = list(tj["model"]["vocab"].values()) + [t["id"] for t in tj["added_tokens"]]
        assert len(set(ids)) == len(ids)
        return max(ids) + 1
    return len(spm_pieces(d / "tokenizer.model"))


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b: bytes):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
        else:
            raise ValueError(f"wire type {wt}")
        yield f, v


def spm_pieces(path: Path) -> list[tuple[str, float, int]]:
    pieces = []
    for f, v in _fields(path.read_bytes()):
        if f == 1:
            piece, score, typ = "", 0.0, 1
            for ff, vv in _fields(v):
                if ff == 1:
                    piece = vv.decode()
                elif ff == 2:
                    (score,) = struct.unpack("<f", vv)
                elif ff == 3:
                    typ = vv
            pieces.append((piece, score, typ))
    return pieces


# ----------------------------------------------------------------------------- determinism


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "README.md"}


def test_generator_reproduces_committed_files(tmp_path):
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True, capture_output=True)
    committed, fresh = _all_files(MODELS), _all_files(tmp_path)
    assert committed == fresh
    for rel in sorted(committed):
        if rel == "expected.npz":
            continue  # deflate bytes depend on the zlib build: compared by content below
        assert (MODELS / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel
    with np.load(MODELS / "expected.npz") as a, np.load(tmp_path / "expected.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- safetensors


SAFETENSORS_FILES = sorted(str(p.relative_to(MODELS)) for p in MODELS.rglob("*.safetensors"))


@pytest.mark.parametrize("rel", SAFETENSORS_FILES)
def test_safetensors_header_is_valid(rel):
    path = MODELS / rel
    header, base = read_header(path)
    assert (base - 8) % 8 == 0
    assert header["__metadata__"] == {"format": "pt"}
    size = path.stat().st_size
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        assert e - b == math.prod(info["shape"]) * ITEMSIZE[info["dtype"]], name
        spans.append((b, e))
    spans.sort()
    assert spans[0][0] == 0 and base + spans[-1][1] == size
    for (_, e0), (b1, _) in itertools.pairwise(spans):
        assert e0 == b1  # contiguous, no overlap, no gap


@pytest.mark.parametrize("rel", SAFETENSORS_FILES)
def test_safetensors_library_reads_non_bf16(rel):
    st = pytest.importorskip("safetensors")
    mine = read_safetensors(MODELS / rel)
    with st.safe_open(str(MODELS / rel), framework="numpy") as fh:
        assert sorted(fh.keys()) == sorted(mine)
        assert fh.metadata() == {"format": "pt"}
        for name, (dt, arr) in mine.items():
            if dt == "BF16":
                continue  # NumPy has no bfloat16: checked by our own parser
            assert np.array_equal(fh.get_tensor(name), arr), name


def test_sharded_index():
    d = MODELS / "bitnet-f32-sharded"
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shards: dict[str, dict] = {}
    for name, fname in index["weight_map"].items():
        shards.setdefault(fname, read_header(d / fname)[0])
        assert name in shards[fname], name
    assert sorted(shards) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    names_in_files = {n for h in shards.values() for n in h if n != "__metadata__"}
    assert names_in_files == set(index["weight_map"])
    total = sum(
        math.prod(i["shape"]) * ITEMSIZE[i["dtype"]]
        for h in shards.values()
        for n, i in h.items()
        if n != "__metadata__"
    )
    assert index["metadata"]["total_size"] == total
    assert set(shards["model-00001-of-00002.safetensors"]) - {"__metadata__"} == {
        "model.embed_tokens.weight",
        "model.norm.weight",
    }


# ----------------------------------------------------------------------------- names, shapes, dtypes


@pytest.mark.parametrize("model", list(MODEL_SPECS))
def test_tensor_names_shapes_dtypes(model):
    h, f, layers, _, _, subs, layout = MODEL_SPECS[model]
    cfg = json.loads((MODELS / model / "config.json").read_text())
    vocab = cfg["vocab_size"]
    tensors = model_tensors(model)
    float_dt = "F32" if model == "bitnet-f32-sharded" else "BF16"
    want = {"model.embed_tokens.weight": (float_dt, [vocab, h]), "model.norm.weight": (float_dt, [h])}
    if layout == "bitlinear":
        want["lm_head.weight"] = ("BF16", [vocab, h])
    for i in range(layers):
        p = f"model.layers.{i}."
        want[p + "input_layernorm.weight"] = (float_dt, [h])
        want[p + "post_attention_layernorm.weight"] = (float_dt, [h])
        if subs:
            want[p + subs[0] + ".weight"] = (float_dt, [h])
            want[p + subs[1] + ".weight"] = (float_dt, [f])
        for role in ROLES:
            m, k = logical_shape(model, role)
            if layout == "masters":
                want[p + role + ".weight"] = (float_dt, [m, k])
            else:
                want[p + role + ".weight"] = ("U8", [m // 4, k])
                want[p + role + ".weight_scale"] = ("BF16", [1])
    got = {n: (dt, list(a.shape)) for n, (dt, a) in tensors.items()}
    assert got == want


# ----------------------------------------------------------------------------- ternary content


def test_unpack_matches_spec_worked_example():
    # codecs.md §3: M = 8, K = 2 -> bytes 92 54 49 0A
    t = np.array([[1, -1], [0, 1], [-1, 0], [1, 1], [0, 0], [-1, -1], [1, 0], [0, -1]], dtype=np.int8)
    packed = np.array([[0x92, 0x54], [0x49, 0x0A]], dtype=np.uint8)
    assert np.array_equal(unpack_hf(packed), t)
    # the transformers docstring example
    packed = np.array([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], dtype=np.uint8)
    assert unpack_hf(packed).tolist() == [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]


def test_expected_npz_keys(expected):
    want = set()
    for model in MODEL_SPECS:
        for n in proj_names(model):
            want |= {f"{model}/{n}/codes", f"{model}/{n}/scale"}
    assert set(expected) == want
    for k, v in expected.items():
        if k.endswith("/codes"):
            model, name = k.split("/")[:2]
            role = name.split(".", 3)[3].rsplit(".", 1)[0]
            assert v.dtype == np.int8 and v.shape == logical_shape(model, role)
            assert set(np.unique(v).tolist()) == {-1, 0, 1}
        else:
            assert v.dtype == np.float32 and v.shape == () and np.isfinite(v) and v > 0


@pytest.mark.parametrize("model", PACKED_MODELS)
def test_packed_weights_unpack_to_expected(model, expected):
    tensors = model_tensors(model)
    for name in proj_names(model):
        codes = unpack_hf(tensors[name][1])
        assert np.array_equal(codes, expected[f"{model}/{name}/codes"]), name
        assert not (tensors[name][1] == 0x55).all()  # not an all-zero tensor


@pytest.mark.parametrize("model", PACKED_MODELS)
def test_expected_scale_follows_convention(model, expected):
    tensors = model_tensors(model)
    layout = MODEL_SPECS[model][-1]
    for name in proj_names(model):
        dt, ws = tensors[name + "_scale"]
        assert dt == "BF16"
        ws = np.float32(ws[0])
        s = expected[f"{model}/{name}/scale"]
        if layout == "autobitlinear":  # multiply: s = f32(weight_scale)
            assert s == ws
        else:  # bitlinear, divide: s = f32(1 / f32(weight_scale))
            assert s == np.float32(np.float32(1.0) / ws)
            assert 30 < ws < 100  # an inverted scale (1/mean|W|), not mean|W|


def test_packed_b158_is_the_bf16_model(expected):
    masters, packed = model_tensors("b158-bf16"), model_tensors("b158-packed")
    for name, (_, arr) in masters.items():
        if f"b158-bf16/{name}/codes" in expected:
            t, _, a, _ = ternarize(arr)
            assert np.array_equal(expected[f"b158-packed/{name}/codes"], t)
            ws = packed[name + "_scale"][1][0]
            assert f32_to_bf16_rne(a)[0] == f32_to_bf16_rne(ws)[0]  # weight_scale = bf16(mean|W|)
            assert abs(ws / a - 1) <= 2.0**-8
        else:
            assert np.array_equal(packed[name][1], arr), name  # non-ternary tensors identical


@pytest.mark.parametrize("model", MASTER_MODELS)
def test_masters_reternarize_to_expected(model, expected):
    tensors = model_tensors(model)
    for name in proj_names(model):
        t, s, a, y = ternarize(tensors[name][1])
        assert np.array_equal(t, expected[f"{model}/{name}/codes"]), name
        assert s == expected[f"{model}/{name}/scale"], name
        ay = np.abs(y)
        dist = np.minimum(np.abs(ay - 0.5), np.abs(ay - 1.5))
        if (model, name) in TIE_TENSORS:
            n_half, n_three_half = TIE_TENSORS[(model, name)]
            assert a == np.float32(2.0**-6) and s == a
            assert int((ay == 0.5).sum()) == n_half and int((ay == 1.5).sum()) == n_three_half
            assert int((dist < 2.0**-20).sum()) == n_half + n_three_half  # the spec's "borderline" count
            assert (t[ay == 0.5] == 0).all()  # round half to even, not away from zero
            assert (np.abs(t[ay == 1.5]) == 1).all()
            # the same a with an exact (order-free) sum
            assert (
                np.float32(
                    math.fsum(np.abs(tensors[name][1]).astype(np.float64).ravel().tolist()) / tensors[name][1].size
                )
                == a
            )
        else:
            assert dist.min() >= 2.0**-13, name  # robust to the summation order
        assert (s != a) == ((model, name) in SCALE_ULP_TENSORS), name
        assert np.abs(tensors[name][1]).max() > 1e-30


# ----------------------------------------------------------------------------- configs and tokenizers


def test_llama_packed_has_duplicate_quantization_config():
    path = MODELS / "llama-packed" / "config.json"
    pairs = json.loads(path.read_text(), object_pairs_hook=lambda items: items)
    qcs = [v for k, v in pairs if k == "quantization_config"]
    assert len(qcs) == 2
    first, last = dict(qcs[0]), dict(qcs[1])
    assert first["linear_class"] == "autobitlinear"  # a first-wins parser gets the wrong convention
    assert "linear_class" not in last and last["modules_to_not_convert"] == ["lm_head"]
    cfg = json.loads(path.read_text())  # plain JSON: last occurrence wins
    assert cfg["quantization_config"] == {"modules_to_not_convert": ["lm_head"], "quant_method": "bitnet"}
    assert path.read_text().count('"quantization_config"') == 2


@pytest.mark.parametrize("model", list(MODEL_SPECS))
def test_config(model):
    h, f, layers, n_h, n_kv, _, layout = MODEL_SPECS[model]
    cfg = json.loads((MODELS / model / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (h, f, layers)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (n_h, n_kv)
    assert cfg["vocab_size"] == tokenizer_size(model)
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["max_position_embeddings"] == 128
    gen = json.loads((MODELS / model / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (cfg["bos_token_id"], cfg["eos_token_id"])
    if model.startswith("b158"):
        assert cfg["architectures"] == ["BitNetForCausalLM"] and cfg["model_type"] == "bitnet"
        assert cfg["hidden_act"] == "relu2" and cfg["tie_word_embeddings"] is True
        assert cfg["rope_theta"] == 500000.0 and cfg["torch_dtype"] == "bfloat16"
        mode = "offline" if layout == "autobitlinear" else "online"
        assert cfg["quantization_config"] == {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": mode,
        }
    elif model == "bitnet-f32-sharded":
        assert cfg["architectures"] == ["BitnetForCausalLM"] and cfg["model_type"] == "llama"
        assert cfg["hidden_act"] == "silu" and cfg["tie_word_embeddings"] is True
        assert cfg["rope_theta"] == 10000.0 and cfg["torch_dtype"] == "float16"
        assert "quantization_config" not in cfg
        assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (1, 2)
    else:
        assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
        assert cfg["hidden_act"] == "silu" and cfg["tie_word_embeddings"] is False
        assert cfg["rope_theta"] == 500000.0


def test_k384_fits_i2s_but_not_tq():
    cfg = json.loads((MODELS / "b158-k384-bf16" / "config.json").read_text())
    ks = {cfg["hidden_size"], cfg["intermediate_size"]}
    assert all(k % 128 == 0 for k in ks)
    assert any(k % 256 != 0 for k in ks)
    for model in ("b158-bf16", "b158-packed", "bitnet-f32-sharded", "llama-packed"):
        cfg = json.loads((MODELS / model / "config.json").read_text())
        assert cfg["hidden_size"] % 256 == 0 and cfg["intermediate_size"] % 256 == 0


@pytest.mark.parametrize("model", ["b158-bf16", "b158-packed", "llama-packed", "b158-k384-bf16"])
def test_bpe_tokenizer_files(model):
    d = MODELS / model
    tj = json.loads((d / "tokenizer.json").read_text())
    tc = json.loads((d / "tokenizer_config.json").read_text())
    cfg = json.loads((d / "config.json").read_text())
    bpe = tj["model"]
    assert bpe["type"] == "BPE" and tj["pre_tokenizer"]["type"] == "ByteLevel" and tj["decoder"]["type"] == "ByteLevel"
    vocab = bpe["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe["merges"]]
    # b158-*: legacy "a b" strings; llama-packed: [a, b] pairs (tokenizers >= 0.20 style)
    assert all(isinstance(m, list) for m in bpe["merges"]) == (model == "llama-packed")
    assert len(vocab) == 256 + len(merges) and len(merges) >= 24
    for a, b in merges:
        assert a in vocab and b in vocab and a + b in vocab
    added = {t["content"]: t["id"] for t in tj["added_tokens"]}
    assert added == {"<|begin_of_text|>": cfg["bos_token_id"], "<|end_of_text|>": cfg["eos_token_id"]}
    assert tc["bos_token"] == "<|begin_of_text|>" and tc["eos_token"] == "<|end_of_text|>"
    assert tc["add_bos_token"] is True and isinstance(tc["chat_template"], str)
    assert "bitnet" not in tc["chat_template"].lower()


def test_spm_tokenizer_model():
    d = MODELS / "bitnet-f32-sharded"
    pieces = spm_pieces(d / "tokenizer.model")
    assert pieces[0][0] == "<unk>" and pieces[0][2] == 2
    assert pieces[1][0] == "<s>" and pieces[1][2] == 3 and pieces[2][0] == "</s>" and pieces[2][2] == 3
    assert [p for p, _, _ in pieces[3:259]] == [f"<0x{b:02X}>" for b in range(256)]
    assert all(t == 6 for _, _, t in pieces[3:259])
    assert all(t == 1 for _, _, t in pieces[259:])
    assert len({p for p, _, _ in pieces}) == len(pieces)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert (tc["bos_token"], tc["eos_token"], tc["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert not (d / "tokenizer.json").exists()


TEXT = "The model weight, ternary scale.\nZebra 42 h\u00e9llo  world! \U0001f600"


@pytest.mark.parametrize("model", ["b158-bf16", "llama-packed"])
def test_bpe_tokenizer_with_tokenizers_package(model):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(MODELS / model / "tokenizer.json"))
    cfg = json.loads((MODELS / model / "config.json").read_text())
    assert tok.get_vocab_size(with_added_tokens=True) == cfg["vocab_size"]
    enc = tok.encode(TEXT)
    assert enc.ids[0] == cfg["bos_token_id"]
    assert tok.decode(enc.ids, skip_special_tokens=True) == TEXT
    assert len(enc.ids) < len(TEXT.encode())  # merges are used


def test_spm_with_sentencepiece_package():
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor(model_file=str(MODELS / "bitnet-f32-sharded" / "tokenizer.model"))
    cfg = json.loads((MODELS / "bitnet-f32-sharded" / "config.json").read_text())
    assert sp.get_piece_size() == cfg["vocab_size"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    assert sp.piece_to_id("<0x0A>") == 3 + 10
    ids = sp.encode(TEXT)
    assert sp.decode(ids) == TEXT  # byte fallback covers the digits, accents, emoji, newline
    assert sp.piece_to_id("<0x0A>") in ids


def test_fixture_size_budget():
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < 12_000_000, total


def test_expected_npz_is_plain_zip():
    with zipfile.ZipFile(MODELS / "expected.npz") as zf:
        assert all(i.filename.endswith(".npy") for i in zf.infolist())
