"""The safetensors container layer against the reference implementation and hostile input.

The ``safetensors`` package (Rust core) is the oracle: files it writes must read identically,
files we write must load in it identically. BF16 has no NumPy dtype, so BF16 files are built by
hand and checked against bit patterns computed independently with ``struct``.
"""

from __future__ import annotations

import json
import math
import os
import struct

import numpy as np
import pytest
import safetensors.numpy as stnp
from safetensors import safe_open

from bitpack.containers.hf_dir import ModelDirWriter, read_config, tokenizer_files
from bitpack.containers.safetensors_read import Checkpoint, SafetensorsFile
from bitpack.containers.safetensors_write import SafetensorsWriter
from bitpack.dtypes import bf16_bits, f32_from_bf16
from bitpack.errors import BitpackError, ContainerError

ST_DTYPE = {  # NumPy dtype -> safetensors dtype string
    np.bool_: "BOOL", np.uint8: "U8", np.int8: "I8", np.uint16: "U16", np.int16: "I16",
    np.float16: "F16", np.uint32: "U32", np.int32: "I32", np.float32: "F32",
    np.float64: "F64", np.int64: "I64", np.uint64: "U64",
}


def sample_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for i, np_dtype in enumerate(ST_DTYPE):
        shape = [(3, 5), (7,), (2, 3, 4), (), (0, 4)][i % 5]
        dt = np.dtype(np_dtype)
        if dt.kind == "f":
            a = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            a = rng.integers(0, 2, shape).astype(bool)
        else:
            info = np.iinfo(dt)
            a = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
        out[f"t.{dt.name}"] = a
    return out


def build_file(path, header, data=b"", *, raw_header: bytes | None = None, length: int | None = None):
    """A safetensors file from a header dict (or raw header bytes) and data, by hand."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    if raw_header is None:
        text += b" " * (-len(text) % 8)
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part") or ".old" in p.name)


# --- reading files written by the reference ---------------------------------------------------

def test_reads_reference_files_for_every_numpy_dtype(tmp_path):
    tensors = sample_tensors(np.random.default_rng(0))
    meta = {"format": "pt", "bitpack.codec": "int8", "note": "ünïcode"}
    path = tmp_path / "ref.safetensors"
    stnp.save_file(tensors, path, metadata=meta)
    f = SafetensorsFile(path)
    assert sorted(f.names()) == sorted(tensors) and f.metadata == meta
    for name, want in tensors.items():
        info = f.info(name)
        assert info.dtype == ST_DTYPE[want.dtype.type] and info.shape == want.shape
        assert info.nbytes == want.nbytes
        got = f.array(name)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
        # The stored bytes sit at info.offset in the file.
        assert path.read_bytes()[info.offset:info.offset + info.nbytes] == want.tobytes()


def test_raw_is_a_read_only_zero_copy_view(tmp_path):
    path = tmp_path / "a.safetensors"
    stnp.save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, path)
    f = SafetensorsFile(path)
    a, b = f.raw("w"), f.raw("w")
    assert not a.flags.writeable and np.shares_memory(a, b)
    with pytest.raises(ValueError):
        a[0, 0] = 1


def test_array_converts_only_when_exact(tmp_path):
    path = tmp_path / "a.safetensors"
    stnp.save_file({"h": np.array([1.5, -2.25, 65504], np.float16), "d": np.array([0.1]),
                    "i8": np.array([-128, 127], np.int8), "i32": np.array([2**24 + 1], np.int32)}, path)
    f = SafetensorsFile(path)
    assert f.array("h", np.float32).tolist() == [1.5, -2.25, 65504.0]
    assert f.array("i8", np.float32).dtype == np.float32
    for name in ("d", "i32"):  # float32 cannot hold these exactly
        with pytest.raises(ContainerError, match="exactly"):
            f.array(name, np.float32)


# --- BF16 -------------------------------------------------------------------------------------

KNOWN_BF16 = [  # bits, float32 value
    (0x0000, 0.0), (0x8000, -0.0), (0x3F80, 1.0), (0xBF80, -1.0), (0x4049, 3.140625),
    (0x0001, 2.0 ** -133), (0x807F, -(127 * 2.0 ** -133)), (0x0080, 2.0 ** -126),
    (0x7F7F, (2 - 2 ** -7) * 2.0 ** 127), (0x7F80, math.inf), (0xFF80, -math.inf),
]


def _bf16_file(tmp_path, bits: np.ndarray, shape):
    data = bits.astype("<u2").tobytes()
    header = {"__metadata__": {"format": "pt"},
              "b": {"dtype": "BF16", "shape": list(shape), "data_offsets": [0, len(data)]}}
    return build_file(tmp_path / "bf16.safetensors", header, data)


def test_bf16_reads_known_bit_patterns(tmp_path):
    bits = np.array([b for b, _ in KNOWN_BF16] + [0x7FC0, 0xFFC1], np.uint16)
    f = SafetensorsFile(_bf16_file(tmp_path, bits, (len(bits),)))
    assert f.info("b").dtype == "BF16" and f.raw("b").dtype == np.uint16
    assert f.raw("b").tolist() == bits.tolist()
    got = f.array("b")
    assert got.dtype == np.float32
    for (_, want), value in zip(KNOWN_BF16, got):
        assert value == want and math.copysign(1, value) == math.copysign(1, want)
    assert np.isnan(got[-2:]).all()
    assert (got.view(np.uint32) >> 16).tolist() == bits.tolist()  # NaN payloads kept bit-exact
    assert f.array("b", np.float64)[:len(KNOWN_BF16)].tolist() == [v for _, v in KNOWN_BF16]


def test_bf16_every_bit_pattern_matches_struct_reference(tmp_path):
    bits = np.arange(65536, dtype=np.uint16)
    f = SafetensorsFile(_bf16_file(tmp_path, bits, (256, 256)))
    got = f.array("b", np.float32).reshape(-1)
    ref_bytes = b"".join(struct.pack("<I", int(b) << 16) for b in bits)
    assert got.astype("<f4").tobytes() == ref_bytes  # bit-exact, NaN payloads included
    values = struct.unpack("<65536f", ref_bytes)  # via Python floats (quiets NaNs, so values only)
    ok = ~np.isnan(got)
    assert got[ok].tolist() == [v for v, keep in zip(values, ok) if keep]
    assert np.isnan(np.array(values)[~ok]).all()
    assert bf16_bits(got).tolist() == bits.tolist()  # the inverse is exact on every pattern
    assert f32_from_bf16(bits).astype("<f4").tobytes() == ref_bytes


def test_bf16_bits_refuses_values_that_need_rounding():
    with pytest.raises(ContainerError, match="not exactly representable"):
        bf16_bits(np.array([1.0, 1 + 2 ** -10], np.float32))
    with pytest.raises(ContainerError):
        bf16_bits(np.array([1.0]))  # float64 input is not accepted either


# --- writing, read back by the reference ------------------------------------------------------

def test_writer_output_loads_identically_in_reference(tmp_path):
    tensors = sample_tensors(np.random.default_rng(1))
    meta = {"format": "pt", "bitpack.shapes": json.dumps({"x": [4, 8]})}
    path = tmp_path / "ours.safetensors"
    with SafetensorsWriter(path, meta) as w:
        for name, a in tensors.items():
            w.add(name, ST_DTYPE[a.dtype.type], a.shape)
        for name, a in tensors.items():
            w.write(name, a)
    loaded = stnp.load_file(path)
    assert sorted(loaded) == sorted(tensors)
    for name, a in tensors.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        assert loaded[name].tobytes() == a.tobytes()
    with safe_open(path, "numpy") as f:
        assert f.metadata() == meta
    assert leftovers(tmp_path) == []


def test_writer_is_byte_identical_to_reference_in_the_same_order(tmp_path):
    tensors = sample_tensors(np.random.default_rng(2))
    ref = stnp.save(tensors, metadata={"format": "pt"})
    n = struct.unpack("<Q", ref[:8])[0]
    order = [k for k in json.loads(ref[8:8 + n]) if k != "__metadata__"]
    path = tmp_path / "ours.safetensors"
    with SafetensorsWriter(path, {"format": "pt"}) as w:
        for name in order:
            w.add(name, ST_DTYPE[tensors[name].dtype.type], tensors[name].shape)
        for name in order:
            w.write(name, tensors[name])
    assert path.read_bytes() == ref


def test_writer_bf16_as_bits_or_exact_float32(tmp_path):
    bits = np.array([[0x3F80, 0x8000, 0x0001], [0x7F80, 0xC049, 0x7FC0]], np.uint16)
    path = tmp_path / "bf.safetensors"
    with SafetensorsWriter(path, {"format": "pt"}) as w:
        w.add("a", "BF16", (2, 3))
        w.add("b", "BF16", (2, 3))
        w.add("s", "F32", (1,))
        w.write("a", bits)
        w.write("b", f32_from_bf16(bits))
        w.write("s", np.array([0.5], np.float32))
    with safe_open(path, "numpy") as f:  # the reference accepts the file and its header
        assert f.get_slice("a").get_dtype() == "BF16" and f.get_slice("b").get_shape() == [2, 3]
        assert f.get_tensor("s").tolist() == [0.5]
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    assert n % 8 == 0 and header["a"] == {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}
    assert data[8 + n:8 + n + 24] == bits.astype("<u2").tobytes() * 2
    got = SafetensorsFile(path).array("b")
    assert got.view(np.uint32).tolist() == (bits.astype(np.uint32) << 16).tolist()


@pytest.mark.parametrize("dtype,value,match", [
    ("BF16", np.array([1 + 2 ** -10], np.float32), "not exactly representable"),
    ("BF16", np.array([1.0], np.float64), "never casts"),
    ("F32", np.array([1.0], np.float64), "never casts"),
    ("I8", np.array([1], np.uint8), "never casts"),
    ("F32", np.array([1.0, 2.0], np.float32), "shape"),
])
def test_writer_refuses_mismatched_arrays_and_leaves_nothing(tmp_path, dtype, value, match):
    target = tmp_path / "out.safetensors"
    with pytest.raises(ContainerError, match=match), SafetensorsWriter(target) as w:
        w.add("x", dtype, (1,))
        w.write("x", value)
    assert list(tmp_path.iterdir()) == []


def test_writer_order_and_completeness(tmp_path):
    target = tmp_path / "out.safetensors"
    w = SafetensorsWriter(target)
    w.add("a", "U8", (1,))
    w.add("b", "U8", (1,))
    with pytest.raises(ContainerError, match="out of order"):
        w.write("b", np.zeros(1, np.uint8))
    with pytest.raises(ContainerError, match="declared twice"):
        w.add("a", "U8", (1,))
    w.write("a", np.zeros(1, np.uint8))
    with pytest.raises(ContainerError, match="after writing began"):
        w.add("c", "U8", (1,))
    with pytest.raises(ContainerError, match="never written"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_existing_target_on_error_and_without_overwrite(tmp_path):
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(ContainerError, match="already exists"):
        SafetensorsWriter(target)
    with pytest.raises(RuntimeError), SafetensorsWriter(target, overwrite=True) as w:
        w.add("a", "F32", (1000,))
        w.write("a", np.zeros(1000, np.float32))
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []
    with SafetensorsWriter(target, overwrite=True) as w:
        pass  # an empty file is valid
    assert SafetensorsFile(target).names() == [] and stnp.load_file(target) == {}


# --- sharded checkpoints ----------------------------------------------------------------------

def _sharded(tmp_path, weight_map=None, extra=None):
    d = tmp_path / "ckpt"
    d.mkdir()
    a = {"model.embed_tokens.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
         "model.norm.weight": np.ones(3, np.float32)}
    b = {"model.layers.0.mlp.down_proj.weight": np.full((1, 3), 0x55, np.uint8),
         "model.layers.0.mlp.down_proj.weight_scale": np.array([0.25], np.float32), **(extra or {})}
    stnp.save_file(a, d / "model-00001-of-00002.safetensors", metadata={"format": "pt", "shard": "1"})
    stnp.save_file(b, d / "model-00002-of-00002.safetensors", metadata={"format": "pt", "shard": "2"})
    if weight_map is None:
        weight_map = {**{k: "model-00001-of-00002.safetensors" for k in a},
                      **{k: "model-00002-of-00002.safetensors" for k in b}}
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 49}, "weight_map": weight_map}))
    return d, {**a, **b}


def test_sharded_checkpoint_resolves_names_to_shards(tmp_path):
    d, tensors = _sharded(tmp_path)
    for where in (d, d / "model.safetensors.index.json"):
        ck = Checkpoint(where)
        assert sorted(ck.names()) == sorted(tensors) and ck.warnings == []
        assert [p.name for p in ck.files] == ["model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors"]
        for name, want in tensors.items():
            assert ck.array(name).tobytes() == want.tobytes()
            assert ck.info(name).shape == want.shape
        assert ck.shard_of("model.norm.weight").path.name.startswith("model-00001")
        assert ck.metadata_of("model.layers.0.mlp.down_proj.weight")["shard"] == "2"
        assert ck.index_metadata == {"total_size": 49}


def test_checkpoint_single_file_forms(tmp_path):
    stnp.save_file({"w": np.zeros(2, np.float32)}, tmp_path / "weights.safetensors")
    for where in (tmp_path, tmp_path / "weights.safetensors"):
        ck = Checkpoint(where)
        assert ck.names() == ["w"] and ck.files == [tmp_path / "weights.safetensors"]
    stnp.save_file({"v": np.zeros(2, np.float32)}, tmp_path / "other.safetensors")
    with pytest.raises(ContainerError, match="2 .safetensors files but no"):
        Checkpoint(tmp_path)
    stnp.save_file({"m": np.zeros(1, np.float32)}, tmp_path / "model.safetensors")
    assert Checkpoint(tmp_path).names() == ["m"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ContainerError, match="no .safetensors"):
        Checkpoint(tmp_path / "empty")


def test_checkpoint_reads_tensors_only_on_demand(tmp_path):
    d, _ = _sharded(tmp_path)
    ck = Checkpoint(d)
    assert all(s._mm is None for s in ck.shards)  # headers parsed, nothing mapped yet
    ck.array("model.norm.weight")
    assert [s._mm is None for s in ck.shards] == [False, True]


def test_index_hostile_cases(tmp_path):
    base = {"model.norm.weight": "model-00001-of-00002.safetensors"}
    cases = [
        ({**base, "x": "model-00003-of-00002.safetensors"}, "does not exist"),
        ({**base, "missing.weight": "model-00002-of-00002.safetensors"}, "does not contain it"),
        ({**base, "x": "../outside.safetensors"}, "outside"),
    ]
    for i, (wmap, match) in enumerate(cases):
        sub = tmp_path / str(i)
        sub.mkdir()
        d, _ = _sharded(sub, weight_map=wmap)
        with pytest.raises(ContainerError, match=match):
            Checkpoint(d)
    # The same tensor in two shards.
    sub = tmp_path / "dup"
    sub.mkdir()
    d, _ = _sharded(sub, extra={"model.norm.weight": np.ones(3, np.float32)})
    with pytest.raises(ContainerError, match="appears in both"):
        Checkpoint(d)
    # Duplicate keys in the weight map.
    (d / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors", '
        '"a": "model-00002-of-00002.safetensors"}}')
    with pytest.raises(ContainerError, match="appears twice"):
        Checkpoint(d)


def test_tensor_missing_from_weight_map_is_read_with_a_warning(tmp_path):
    d, tensors = _sharded(tmp_path, weight_map={
        "model.norm.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.mlp.down_proj.weight": "model-00002-of-00002.safetensors"})
    ck = Checkpoint(d)
    assert sorted(ck.names()) == sorted(tensors)
    assert len(ck.warnings) == 2 and all("missing from the weight_map" in w for w in ck.warnings)
    assert ck.array("model.embed_tokens.weight").tobytes() == tensors["model.embed_tokens.weight"].tobytes()


# --- hostile files ----------------------------------------------------------------------------

def test_every_truncation_point_is_an_error(tmp_path):
    good = tmp_path / "good.safetensors"
    stnp.save_file({"a": np.arange(5, dtype=np.float32), "b": np.ones((2, 2), np.int8)}, good,
                   metadata={"format": "pt"})
    data = good.read_bytes()
    bad = tmp_path / "cut.safetensors"
    for cut in range(len(data)):
        bad.write_bytes(data[:cut])
        with pytest.raises(BitpackError) as err:
            f = SafetensorsFile(bad)
            [f.array(n) for n in f.names()]  # never reached: the open itself must fail
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


U8x2 = {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}

HOSTILE = [  # id, header (dict) or raw header bytes, data, expected message fragment
    ("not-json", b"{not json}     ", b"", "not valid UTF-8 JSON"),
    ("not-utf8", b'{"\xff": 1}     ', b"", "not valid UTF-8 JSON"),
    ("json-array", b"[1, 2, 3]", b"", "not an object"),
    ("nan-constant", b'{"a": NaN}', b"", "not valid"),
    ("duplicate-name", (b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}'), b"\0\0", "twice"),
    ("unknown-dtype", {"a": {**U8x2, "dtype": "F8_E4M3"}}, b"\0\0", "unsupported dtype 'F8_E4M3'"),
    ("missing-dtype", {"a": {"shape": [2], "data_offsets": [0, 2]}}, b"\0\0", "unsupported dtype"),
    ("negative-dim", {"a": {**U8x2, "shape": [-2]}}, b"\0\0", "non-negative"),
    ("bool-dim", {"a": {**U8x2, "shape": [True, 2]}}, b"\0\0", "non-negative"),
    ("float-offset", {"a": {**U8x2, "data_offsets": [0.0, 2]}}, b"\0\0", "pair of integers"),
    ("three-offsets", {"a": {**U8x2, "data_offsets": [0, 1, 2]}}, b"\0\0", "pair of integers"),
    ("begin-after-end", {"a": {**U8x2, "data_offsets": [2, 0]}}, b"\0\0", "outside the data section"),
    ("end-past-data", {"a": {**U8x2, "data_offsets": [0, 4], "shape": [4]}}, b"\0\0", "outside"),
    ("size-mismatch", {"a": {**U8x2, "dtype": "F32"}}, b"\0\0", "needs 8"),
    ("overlap", {"a": U8x2, "b": {**U8x2, "data_offsets": [1, 3]}}, b"\0\0\0", "overlap"),
    ("gap", {"a": U8x2, "b": {**U8x2, "data_offsets": [3, 5]}}, b"\0" * 5, "gap of 1"),
    ("trailing-bytes", {"a": U8x2}, b"\0" * 6, "4 bytes after the last tensor"),
    ("meta-not-str", {"__metadata__": {"k": 1}, "a": U8x2}, b"\0\0", "strings to strings"),
    ("entry-not-object", {"a": [1, 2]}, b"", "not a JSON object"),
]


@pytest.mark.parametrize("header,data,match", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_headers_are_refused(tmp_path, header, data, match):
    raw = header if isinstance(header, bytes) else None
    path = build_file(tmp_path / "bad.safetensors", header, data, raw_header=raw)
    with pytest.raises(ContainerError, match=match) as err:
        SafetensorsFile(path)
    assert str(path) in str(err.value)


def test_header_length_limits(tmp_path):
    path = build_file(tmp_path / "long.safetensors", {"a": U8x2}, b"\0\0", length=1 << 40)
    with pytest.raises(ContainerError, match="larger than the rest of the file"):
        SafetensorsFile(path)
    sparse = tmp_path / "huge.safetensors"  # a sparse file: no real disk use
    with sparse.open("wb") as fh:
        fh.write(struct.pack("<Q", 100_000_001))
        fh.truncate(100_000_100)
    with pytest.raises(ContainerError, match="exceeds"):
        SafetensorsFile(sparse)


def test_tensor_errors_name_the_tensor_and_offsets(tmp_path):
    path = build_file(tmp_path / "bad.safetensors", {"w.weight": {**U8x2, "data_offsets": [0, 9]}},
                      b"\0\0")
    with pytest.raises(ContainerError) as err:
        SafetensorsFile(path)
    assert "'w.weight'" in str(err.value) and "[0, 9]" in str(err.value)


def test_reference_quirks_we_accept(tmp_path):
    # Unordered offsets, zero-size tensors, null metadata and a header without padding are all
    # accepted by the reference; refusing them would reject valid files.
    header = {"__metadata__": None, "b": {**U8x2, "data_offsets": [2, 4]}, "a": U8x2,
              "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [4, 4]}}
    raw = json.dumps(header).encode()
    raw += b" " if len(raw) % 8 == 0 else b""  # make its length not a multiple of 8
    path = build_file(tmp_path / "q.safetensors", None, b"\1\2\3\4", raw_header=raw)
    f = SafetensorsFile(path)
    assert f.metadata == {} and f.array("b").tolist() == [3, 4] and f.array("e").shape == (0, 3)
    assert sorted(stnp.load_file(path)) == ["a", "b", "e"]


# --- HF model directories ---------------------------------------------------------------------

HF1BITLLM_LIKE = """{
  "architectures": ["LlamaForCausalLM"],
  "quantization_config": {"quant_method": "bitnet", "modules_to_not_convert": null},
  "hidden_size": 4096,
  "rope_scaling": {"type": "x", "type": "y"},
  "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear"}
}"""


def test_read_config_keeps_last_duplicate_and_warns(tmp_path):
    (tmp_path / "config.json").write_text(HF1BITLLM_LIKE)
    config, warnings = read_config(tmp_path)
    assert config == json.loads(HF1BITLLM_LIKE)  # same values as json / transformers
    assert config["quantization_config"]["linear_class"] == "bitlinear"
    by_path = {w.path: w for w in warnings}
    assert set(by_path) == {"quantization_config", "rope_scaling.type"}
    q = by_path["quantization_config"]
    assert q.differ and len(q.values) == 2 and "appears 2 times" in str(q)
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert read_config(tmp_path / "config.json") == ({"a": 1}, [])
    with pytest.raises(ContainerError, match="no config.json"):
        read_config(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text('{"a": ')
    with pytest.raises(ContainerError, match="not a readable JSON"):
        read_config(tmp_path)


def test_tokenizer_files(tmp_path):
    for name in ("merges.txt", "tokenizer.json", "model.safetensors", "generation_config.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "tokenizer.model").mkdir()  # a directory is not a file to copy
    assert [p.name for p in tokenizer_files(tmp_path)] == [
        "tokenizer.json", "generation_config.json", "merges.txt"]


def test_model_dir_writer_commits_atomically(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tokenizer.json").write_text('{"v": 1}')
    out = tmp_path / "out"
    with ModelDirWriter(out, protect=[src]) as w:
        w.write_json("config.json", {"model_type": "bitnet", "name": "é"})
        w.copy(src / "tokenizer.json")
        with w.safetensors("model.safetensors", {"format": "pt"}) as st:
            st.add("x", "F32", (2,))
            st.write("x", np.array([1, 2], np.float32))
        w.write_index({"x": "model.safetensors"}, 8)
        assert not out.exists()  # nothing visible before commit
        w.commit()
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json"]
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["name"] == "é"
    assert Checkpoint(out).array("x").tolist() == [1, 2]
    assert leftovers(tmp_path) == []


def test_model_dir_writer_refuses_and_preserves(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ContainerError, match="not empty"):
        ModelDirWriter(out)
    with pytest.raises(ContainerError, match="only a directory bitpack wrote"):
        ModelDirWriter(out, overwrite=True)
    (tmp_path / "out.receipt.json").write_text('{"bitpack_version": "0"}')  # now it is bitpack's output
    # overwrite=True, but an error before commit: the old directory is intact.
    with pytest.raises(RuntimeError), ModelDirWriter(out, overwrite=True) as w:
        w.write_json("config.json", {})
        raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []
    # Leaving the block without commit() publishes nothing either.
    with ModelDirWriter(out, overwrite=True) as w:
        w.write_json("config.json", {})
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []
    # A successful overwrite replaces the directory as a whole.
    with ModelDirWriter(out, overwrite=True) as w:
        w.write_json("config.json", {"new": True})
        w.commit()
    assert [p.name for p in out.iterdir()] == ["config.json"] and leftovers(tmp_path) == []


def test_model_dir_writer_never_replaces_its_source(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    (src / "tokenizer.json").write_text("{}")
    (tmp_path / "model.receipt.json").write_text('{"bitpack_version": "0"}')  # so overwrite=True may replace it
    with pytest.raises(ContainerError, match="replace the source"):
        ModelDirWriter(src, overwrite=True, protect=[src / "tokenizer.json"])
    with pytest.raises(ContainerError, match="replace the source"):
        ModelDirWriter(tmp_path, overwrite=True, protect=[src])
    with ModelDirWriter(src, overwrite=True) as w:
        with pytest.raises(ContainerError, match="contains the source file"):
            w.copy(src / "tokenizer.json")
        for bad in ("../x", "/etc/x", ""):
            with pytest.raises(ContainerError, match="invalid file name"):
                w.path_for(bad)
    assert (src / "tokenizer.json").read_text() == "{}" and leftovers(tmp_path) == []


def test_model_dir_writer_into_empty_or_missing_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (empty, tmp_path / "a" / "b"):
        with ModelDirWriter(out) as w:
            w.write_bytes("sub/file.bin", b"x")
            w.commit()
        assert (out / "sub" / "file.bin").read_bytes() == b"x"
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ContainerError, match="not a directory"):
        ModelDirWriter(f, overwrite=True)
    umask = os.umask(0)
    os.umask(umask)
    for made in (empty / "sub" / "file.bin", empty):  # not left private (0600/0700) like mkstemp's
        want = (0o666 if made.is_file() else 0o777) & ~umask
        assert os.stat(made).st_mode & 0o777 == want


@pytest.mark.parametrize("dtype", [["F32"], {"F32": 1}, 5, None])
def test_a_dtype_that_is_not_a_string_is_one_clear_error(tmp_path, dtype):
    import json
    import struct

    from bitpack.containers.safetensors_read import SafetensorsFile
    from bitpack.errors import ContainerError

    header = json.dumps({"w": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(ContainerError, match="unsupported dtype"):
        SafetensorsFile(path)


def test_deeply_nested_json_is_refused_in_headers_indexes_and_configs(tmp_path):
    import json
    import struct

    from bitpack.containers.hf_dir import read_config
    from bitpack.containers.safetensors_read import SafetensorsFile, read_index
    from bitpack.errors import BitpackError

    deep = "[" * 100_000 + "]" * 100_000  # Python's own json would raise RecursionError
    header = ('{"__metadata__": {"x": "y"}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], '
              f'"extra": {deep}}}}}').encode()
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    with pytest.raises(BitpackError, match="nested 100002 levels deep"):
        SafetensorsFile(path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ' + deep + "}")
    with pytest.raises(BitpackError, match="levels deep"):
        read_index(tmp_path / "model.safetensors.index.json")
    (tmp_path / "config.json").write_text(json.dumps({"a": 1})[:-1] + ', "b": ' + deep + "}")
    with pytest.raises(BitpackError, match="levels deep"):
        read_config(tmp_path)
