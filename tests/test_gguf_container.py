"""The GGUF container: reader hardening, dialect detection, the streaming writer
(spec/gguf.md §1, §3.2, §8; pitfalls.md P9, P17, P20, P22).

PyPI gguf is the oracle for standard-type files in both directions. Hostile files are
built byte by byte here, independently of bitpack's writer, so the writer's own checks
cannot hide a reader bug.
"""

from __future__ import annotations

import os
import struct
import time
import warnings
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import quantize

from bitpack.codecs import get_codec
from bitpack.codecs.base import pad
from bitpack.codecs.tl2 import TL2
from bitpack.containers.gguf_kv import ValueType
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.gguf_types import DIALECTS, ggml_type, types
from bitpack.containers.gguf_write import GGUFWriter
from bitpack.errors import BitpackError, ContainerError, DialectError

V = ValueType
RNG = np.random.default_rng(1234)
QT = gguf.GGMLQuantizationType


# -- helpers ------------------------------------------------------------------------------


def tq_bytes(shape: tuple[int, int], qtype) -> np.ndarray:
    """Real TQ data: ternary weights times a scale through gguf.quants (uint8, rows x bytes)."""
    w = RNG.integers(-1, 2, size=shape).astype(np.float32) * np.float32(0.37)
    return quantize(w, qtype)


def write(path: Path, kvs=(), tensors=(), **kw) -> Path:
    """kvs: (key, value, type[, element type]); tensors: (name, numpy shape, type id, bytes)."""
    with GGUFWriter(path, **kw) as w:
        for kv in kvs:
            w.add_kv(*kv)
        for name, shape, type_id, data in tensors:
            w.add_tensor(name, shape, type_id, memoryview(data).nbytes)
        w.write_header()
        for name, _, _, data in tensors:
            w.write_tensor(name, data)
    return path


def gstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv_bytes(key: str, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def info_bytes(name: str, ne, type_id: int, offset: int) -> bytes:
    return gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne) + struct.pack(
        "<IQ", type_id, offset
    )


def raw_gguf(kvs=(), infos=(), data=b"", *, n_kv=None, n_tensors=None, magic=b"GGUF", version=3, alignment=32):
    """A GGUF file assembled by hand: header, KV records, tensor infos, padding, data."""
    head = magic + struct.pack("<I", version)
    head += struct.pack("<QQ", len(infos) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(infos)
    return body + bytes(pad(len(body), alignment) - len(body)) + data


def open_bytes(tmp_path: Path, blob: bytes, **kw) -> GGUFFile:
    p = tmp_path / "model.gguf"
    p.write_bytes(blob)
    return GGUFFile(p, **kw)


ARCH_LLAMA = kv_bytes("general.architecture", V.STRING, gstr("llama"))


# -- round trips --------------------------------------------------------------------------

MANY_KVS = [
    ("general.architecture", "llama", V.STRING),
    ("k.u8", 255, V.UINT8),
    ("k.i8", -128, V.INT8),
    ("k.u16", 65535, V.UINT16),
    ("k.i16", -32768, V.INT16),
    ("k.u32", 2**32 - 1, V.UINT32),
    ("k.i32", -(2**31), V.INT32),
    ("k.f32", 0.1, V.FLOAT32),
    ("k.bool", True, V.BOOL),
    ("k.false", False, V.BOOL),
    ("k.str", "héllo wörld ✓", V.STRING),
    ("k.empty", "", V.STRING),
    ("k.u64", 2**64 - 1, V.UINT64),
    ("k.i64", -(2**63), V.INT64),
    ("k.f64", 1e300, V.FLOAT64),
    ("k.strs", ["a", "Ġthe", "", "<0x0A>", "日本"], V.ARRAY),
    ("k.noarr", np.array([], dtype=np.int32), V.ARRAY),
    ("k.i32s", np.arange(-3, 7, dtype=np.int32), V.ARRAY),
    ("k.f32s", RNG.standard_normal(17).astype(np.float32), V.ARRAY),
    ("k.u64s", np.array([0, 2**64 - 1], dtype=np.uint64), V.ARRAY),
    ("k.bools", np.array([True, False, True]), V.ARRAY),
    ("k.f64s", [1.5, -2.25], V.ARRAY, V.FLOAT64),
    ("k.nested", [np.array([1, 2], dtype=np.uint16), ["x", "y"], [np.array([7], dtype=np.int8)]], V.ARRAY),
]


def assert_kv_equal(got, want):
    assert list(got) == list(want)
    for key in want:
        a, b = got[key], want[key]
        if isinstance(b, (list, np.ndarray)) and not isinstance(b, str):
            assert len(a) == len(b), key
            for x, y in zip(a, b):
                if isinstance(y, (list, np.ndarray)) and not isinstance(y, str):
                    assert_kv_equal({0: x}, {0: y})
                else:
                    assert x == y, key
            if isinstance(b, np.ndarray):
                assert isinstance(a, np.ndarray) and a.dtype == b.dtype, key
        else:
            assert a == b and type(a) is type(b), key


def round_trip_tensors():
    f32 = RNG.standard_normal((3, 64)).astype(np.float32)
    f16 = RNG.standard_normal((5,)).astype(np.float16)
    tq1 = tq_bytes((4, 256), QT.TQ1_0)
    tq2 = tq_bytes((2, 512), QT.TQ2_0)
    return [
        ("blk.0.attn_norm.weight", f32.shape, 0, f32),
        ("token_embd.weight", f16.shape, 1, f16),
        ("blk.0.attn_q.weight", (4, 256), 34, tq1),
        ("blk.0.ffn_up.weight", (2, 512), 35, tq2),
    ]


def test_round_trip_kv_types_and_tensors(tmp_path):
    tensors = round_trip_tensors()
    path = write(tmp_path / "a.gguf", MANY_KVS, tensors)
    f = GGUFFile(path)
    want = {kv[0]: kv[1] for kv in MANY_KVS}
    want["k.f32"] = float(np.float32(0.1))  # the value as stored
    want["k.f64s"] = np.array([1.5, -2.25])
    assert_kv_equal(f.kv, want)
    assert f.kv_types["k.u64"] == (V.UINT64, None)
    assert f.kv_types["k.strs"] == (V.ARRAY, V.STRING)
    assert f.kv_types["k.nested"] == (V.ARRAY, V.ARRAY)
    assert f.kv_types["k.bools"] == (V.ARRAY, V.BOOL)
    assert f.version == 3 and f.alignment == 32 and f.dialect == "mainline" and f.architecture == "llama"
    assert "general.alignment" not in f.kv  # never written for 32 (§1.4)
    assert f.data_start % 32 == 0
    running = 0
    for t, (name, shape, type_id, data) in zip(f.tensors, tensors):
        assert (t.name, t.shape, f.shape(name), t.type_id) == (name, shape, shape, type_id)
        assert t.ne == tuple(reversed(shape))
        assert t.offset == running and t.data_offset == f.data_start + t.offset
        assert t.nbytes == memoryview(data).nbytes
        assert f.raw(name).tobytes() == np.ascontiguousarray(data).tobytes()
        running += pad(t.nbytes, 32)
    assert [t.extent for t in f.tensors] == [pad(t.nbytes, 32) for t in f.tensors[:-1]] + [f.tensors[-1].nbytes]
    assert path.stat().st_size == f.tensors[-1].data_offset + f.tensors[-1].nbytes  # no trailing padding
    assert [f.codec_name(t) for t in f.tensors] == [None, None, "tq1_0", "tq2_0"]
    assert [f.type_name(t) for t in f.tensors] == ["F32", "F16", "TQ1_0", "TQ2_0"]
    # TQ decodes to the same ternary codes gguf.quants would dequantize
    codes, _ = get_codec("tq2_0").decode(f.raw("blk.0.ffn_up.weight"), (2, 512))
    ref = gguf.quants.dequantize(tensors[3][3], QT.TQ2_0)
    assert np.array_equal(np.sign(ref).astype(np.int8), codes)

    # A faithful rewrite from kv + kv_types is byte-identical.
    again = tmp_path / "b.gguf"
    with GGUFWriter(again) as w:
        for key, value in f.kv.items():
            w.add_kv(key, value, f.kv_types[key])
        for t in f.tensors:
            w.add_tensor(t.name, t.shape, t.type_id, t.nbytes)
        for t in f.tensors:
            w.write_tensor(t.name, f.raw(t))  # memmap views, written without a copy
    assert again.read_bytes() == path.read_bytes()
    f.close()


def pypi_contents(reader: gguf.GGUFReader) -> dict:
    return {k: v.contents() for k, v in reader.fields.items() if not k.startswith("GGUF.")}


def test_pypi_reader_reads_our_files(tmp_path):
    kvs = [kv for kv in MANY_KVS if kv[0] != "k.nested"]  # keep to what gguf's contents() flattens
    tensors = round_trip_tensors() + [("ints", (3, 4), 26, np.arange(12, dtype=np.int32).reshape(3, 4))]
    path = write(tmp_path / "ours.gguf", kvs, tensors)
    ours = GGUFFile(path)
    theirs = gguf.GGUFReader(path)
    contents = pypi_contents(theirs)
    assert list(contents) == list(ours.kv)
    for key, value in ours.kv.items():
        want = value.tolist() if isinstance(value, np.ndarray) else value
        assert contents[key] == want, key
    assert [t.name for t in theirs.tensors] == [t.name for t in ours.tensors]
    for t, mine in zip(theirs.tensors, ours.tensors):
        assert tuple(int(d) for d in t.shape) == mine.ne
        assert int(t.tensor_type) == mine.type_id
        assert int(t.data_offset) == mine.data_offset
        assert int(t.n_bytes) == mine.nbytes
        assert np.asarray(t.data).tobytes() == ours.raw(mine).tobytes()


def test_we_read_pypi_writer_files(tmp_path):
    path = tmp_path / "theirs.gguf"
    w = gguf.GGUFWriter(path, "bitnet")
    w.add_uint32("bitnet.block_count", 1)
    w.add_float32("bitnet.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_token_list(["<s>", "</s>", "▁a"])
    w.add_token_scores([0.0, -1.5, 2.0])
    w.add_token_types([3, 3, 1])
    w.add_uint64("x.u64", 2**63 + 5)
    w.add_float64("x.f64", 3.25)
    w.add_array("x.arr", [1, 2, 3])
    tensors = {
        "token_embd.weight": RNG.standard_normal((3, 96)).astype(np.float16),
        "output_norm.weight": RNG.standard_normal(96).astype(np.float32),
        "blk.0.attn_q.weight": tq_bytes((3, 256), QT.TQ2_0),
        "blk.0.attn_k.weight": tq_bytes((2, 512), QT.TQ1_0),
        "ints": np.arange(10, dtype=np.int16),
    }
    for name, arr in tensors.items():
        raw = {"blk.0.attn_q.weight": QT.TQ2_0, "blk.0.attn_k.weight": QT.TQ1_0}.get(name)
        w.add_tensor(name, arr, raw_dtype=raw)  # no raw_shape (pitfalls.md P22)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    theirs = gguf.GGUFReader(path)
    ours = GGUFFile(path)
    assert ours.dialect == "mainline" and ours.architecture == "bitnet"
    contents = pypi_contents(theirs)
    assert list(contents) == list(ours.kv)
    for key, value in ours.kv.items():
        assert contents[key] == (value.tolist() if isinstance(value, np.ndarray) else value), key
    assert ours.kv_types["x.arr"] == (V.ARRAY, V.INT32)
    assert [t.name for t in ours.tensors] == list(tensors)
    for t, mine in zip(theirs.tensors, ours.tensors):
        assert (tuple(int(d) for d in t.shape), int(t.tensor_type)) == (mine.ne, mine.type_id)
        assert (int(t.data_offset), int(t.n_bytes)) == (mine.data_offset, mine.nbytes)
        assert np.asarray(t.data).tobytes() == ours.raw(mine).tobytes()
    assert ours.shape("blk.0.attn_q.weight") == (3, 256)
    # gguf pads after the last tensor: its extent is the padded size, data ends earlier.
    last = ours.tensors[-1]
    assert path.stat().st_size == last.data_offset + last.extent
    assert last.extent == pad(last.nbytes, 32) > last.nbytes


def test_i2_s_file_reads_as_bitnet_cpp_2024(tmp_path):
    codec = get_codec("i2_s")
    shapes = [(32, 128), (64, 256), (96, 384)]
    encoded = {}
    for i, shape in enumerate(shapes):
        codes = RNG.integers(-1, 2, size=shape).astype(np.int8)
        scale = np.float32(0.5 + i)
        encoded[f"blk.{i}.attn_q.weight"] = (shape, codes, scale, codec.encode(codes, scale))
    norm = np.ones(128, np.float32)
    tensors = [("output_norm.weight", norm.shape, 0, norm)]
    tensors += [(name, shape, 36, buf) for name, (shape, _, _, buf) in encoded.items()]
    path = write(tmp_path / "i2s.gguf", [("general.architecture", "bitnet", V.STRING)], tensors,
                 dialect="bitnet-cpp-2024")
    f = GGUFFile(path)
    assert f.dialect == "bitnet-cpp-2024"  # type 36 alone marks the fork family (§3.2)
    for name, (shape, codes, scale, buf) in encoded.items():
        t = f.tensor(name)
        assert t.nbytes == shape[0] * shape[1] // 4 + 32 == codec.nbytes(shape)
        assert f.codec_name(name) == "i2_s" and f.type_name(name) == "I2_S"
        got_codes, got_scale = codec.decode(f.raw(name), f.shape(name))
        assert np.array_equal(got_codes, codes) and got_scale == scale
    assert [t.extent for t in f.tensors] == [pad(t.nbytes, 32) for t in f.tensors[:-1]] + [f.tensors[-1].nbytes]
    assert f.codec_name("output_norm.weight") is None  # not a ternary type


def test_type_tables_agree_with_codecs_and_pypi():
    for shape in [(32, 128), (64, 256), (1536, 4096)]:
        assert types("bitnet-cpp-2024")[36].nbytes(shape) == get_codec("i2_s").nbytes(shape)
        assert types("bitnet-cpp-2026")[38].nbytes(shape) == get_codec("tl1", BM=32, BK=64, bm=32).nbytes(shape)
    for shape in [(64, 288), (1536, 4096)]:
        tl2 = get_codec("tl2", BM=32, BK=96, bm=32).nbytes(shape)
        assert types("bitnet-cpp-2024")[39].nbytes(shape) == types("bitnet-cpp-2026")[42].nbytes(shape) == tl2
    for dialect in DIALECTS:
        table = types(dialect)
        for type_id, t in table.items():
            if type_id in (34, 35):
                assert t.nbytes((2, 512)) == get_codec(t.codec).nbytes((2, 512))
            if type_id in {q.value for q in QT} and not (dialect == "bitnet-cpp-2024" and type_id == 39):
                block, size = gguf.GGML_QUANT_SIZES[QT(type_id)]
                assert QT(type_id).name == t.name
                assert t.nbytes((3, block * 4)) == 3 * 4 * size


# -- dialect detection (§3.2) ----------------------------------------------------------------


def dialect_file(tmp_path, arch, tensors, extra_kvs=(), alignment=32, **kw) -> GGUFFile:
    """tensors: (name, numpy shape, type id, nbytes) with zero data, laid out as the running sum."""
    kvs = [kv_bytes("general.architecture", V.STRING, gstr(arch))] if arch else []
    kvs += list(extra_kvs)
    if alignment != 32:
        kvs.append(kv_bytes("general.alignment", V.UINT32, struct.pack("<I", alignment)))
    infos, offset = [], 0
    for name, shape, type_id, nbytes in tensors:
        infos.append(info_bytes(name, tuple(reversed(shape)), type_id, offset))
        offset += pad(nbytes, alignment)
    last = pad(tensors[-1][3], alignment) - tensors[-1][3]
    return open_bytes(tmp_path, raw_gguf(kvs, infos, bytes(offset - last), alignment=alignment), **kw)


TL2_SHAPE = (256, 256)  # TL2 16416 bytes, MXFP4 34816: the formulas disagree


def test_type_39_is_tl2_in_a_fork_file(tmp_path):
    f = dialect_file(tmp_path, "bitnet-b1.58", [("a", TL2_SHAPE, 39, TL2.type_nbytes(TL2_SHAPE)), ("n", (4,), 0, 16)])
    assert f.dialect == "bitnet-cpp-2024"
    assert (f.type_name("a"), f.codec_name("a"), f.tensor("a").nbytes) == ("TL2", "tl2", 16416)
    assert f.raw("a").nbytes == 16416


def test_type_39_is_mxfp4_in_a_mainline_file(tmp_path):
    f = dialect_file(tmp_path, "llama", [("a", TL2_SHAPE, 39, ggml_type("mainline", 39).nbytes(TL2_SHAPE))])
    assert f.dialect == "mainline"
    assert (f.type_name("a"), f.codec_name("a")) == ("MXFP4", None)
    assert f.raw("a").nbytes == 34816  # reading the file is fine ...
    assert f.ggml_type("a").codec is None  # ... but it is not a ternary type


def test_type_42_in_fork_and_mainline_files(tmp_path):
    f = dialect_file(tmp_path, "bitnet-b1.58", [("a", TL2_SHAPE, 42, TL2.type_nbytes(TL2_SHAPE))])
    assert (f.dialect, f.type_name("a"), f.codec_name("a")) == ("bitnet-cpp-2026", "TL2", "tl2")
    f.close()
    q2 = get_codec("q2_0").nbytes((4, 512))  # mainline Q2_0, group 64: 576 bytes (TL2 would be 512)
    f = dialect_file(tmp_path, "llama", [("a", (4, 512), 42, q2), ("b", (4,), 0, 16)])
    assert (f.dialect, f.type_name("a"), f.codec_name("a"), f.tensor("a").nbytes) == ("mainline", "Q2_0", "q2_0", q2)
    assert f.raw("a").nbytes == q2
    f.close()
    # a type-42 tensor sized as neither layout is listed by nobody's rule: refused
    with pytest.raises(DialectError, match="fits neither"):
        dialect_file(tmp_path, "llama", [("a", (4, 512), 42, 300), ("b", (4,), 0, 16)])


def test_bitpack_dialect_key_wins(tmp_path):
    key = kv_bytes("bitpack.dialect", V.STRING, gstr("bitnet-cpp-2024"))
    # TL2-sized 39 with architecture llama would be ambiguous without the key
    f = dialect_file(tmp_path, "llama", [("a", TL2_SHAPE, 39, TL2.type_nbytes(TL2_SHAPE))], [key])
    assert (f.dialect, f.codec_name("a")) == ("bitnet-cpp-2024", "tl2")
    f.close()
    bad = kv_bytes("bitpack.dialect", V.STRING, gstr("ggml-2023"))
    with pytest.raises(DialectError, match="bitpack.dialect is 'ggml-2023'"):
        dialect_file(tmp_path, "llama", [("n", (4,), 0, 16)], [bad])


def test_ambiguous_dialect_asks_for_override(tmp_path):
    tensors = [("a", TL2_SHAPE, 39, TL2.type_nbytes(TL2_SHAPE))]
    with pytest.raises(DialectError, match="sized as bitnet.cpp TL2, but nothing else marks.*pass dialect="):
        dialect_file(tmp_path, "llama", tensors)
    assert dialect_file(tmp_path, "llama", tensors, dialect="bitnet-cpp-2024").codec_name("a") == "tl2"
    # both formulas fit once padded to 256 bytes: TL2 96, MXFP4 136 for (1, 256)
    with pytest.raises(DialectError, match="fits both TL2 and MXFP4"):
        dialect_file(tmp_path, "bitnet-b1.58", [("a", (1, 256), 39, 96), ("b", (4,), 0, 16)], alignment=256)
    # bitnet-25 (2024-25 only) contradicts a TL2 with the 2026 id
    with pytest.raises(DialectError, match="conflicting"):
        dialect_file(tmp_path, "bitnet-25", [("a", TL2_SHAPE, 42, TL2.type_nbytes(TL2_SHAPE))])
    # I2_S (fork) next to mainline Q2_0
    with pytest.raises(DialectError, match="conflicting"):
        dialect_file(tmp_path, "llama", [("q", (4, 512), 42, 576), ("i", (32, 128), 36, 1056)])
    with pytest.raises(DialectError, match="fits neither"):
        dialect_file(tmp_path, "bitnet-b1.58", [("a", TL2_SHAPE, 39, 1000), ("b", (4,), 0, 16)])
    with pytest.raises(DialectError, match="unknown dialect"):
        dialect_file(tmp_path, "llama", [("n", (4,), 0, 16)], dialect="ik_llama")


def test_bitnet_25_means_2024_and_unknown_ids_are_listed(tmp_path):
    f = dialect_file(tmp_path, "bitnet-25", [("i", (32, 128), 36, 1056), ("x", (4, 256), 250, 100)])
    assert f.dialect == "bitnet-cpp-2024"
    assert (f.type_name("x"), f.codec_name("x"), f.tensor("x").extent) == ("unknown type 250", None, 100)
    f.close()
    # an id that only ik_llama.cpp has cannot sit in a file only the 2024-25 fork writes
    with pytest.raises(DialectError, match=r"conflicting.*type 134 \(IQ1_BN\) exists only in ik-llama"):
        dialect_file(tmp_path, "bitnet-25", [("i", (32, 128), 36, 1056), ("x", (4, 256), 134, 100)])


def q2_span(shape, codec):
    return get_codec(codec).nbytes(shape)


@pytest.mark.parametrize(("codec", "dialect", "name"), [
    ("q2_0", "mainline", "Q2_0"),  # group 64: mainline and prism-v7+ (mainline preferred)
    ("pq2_0", "prism-legacy", "PQ2_0"),  # group 128 under 42: published first-generation Bonsai files
])
def test_type_42_is_read_by_its_byte_span(tmp_path, codec, dialect, name):
    shape = (64, 512)  # 9216 bytes at group 64, 8704 at group 128: the spans differ
    f = dialect_file(tmp_path, "qwen3", [("w", shape, 42, q2_span(shape, codec)), ("n", (4,), 0, 16)])
    assert (f.dialect, f.type_name("w"), f.codec_name("w")) == (dialect, name, codec)


def test_prism_ids_and_keys_decide_the_prism_dialect(tmp_path):
    shape = (64, 512)
    f = dialect_file(tmp_path, "qwen3", [("p", shape, 142, q2_span(shape, "pq2_0")),
                                         ("w", shape, 42, q2_span(shape, "q2_0")), ("n", (4,), 0, 16)])
    assert (f.dialect, f.codec_name("p"), f.codec_name("w")) == ("prism", "pq2_0", "q2_0")
    f.close()
    # a Hadamard key marks prism-v7+, where 42 is group 64: a group-128 span there is refused
    key = kv_bytes("prism.hadamard.block_size", V.UINT32, struct.pack("<I", 128))
    with pytest.raises(DialectError, match="conflicting.*prism.hadamard"):
        dialect_file(tmp_path, "qwen3", [("w", shape, 42, q2_span(shape, "pq2_0")), ("n", (4,), 0, 16)], [key])


def test_tiny_type_42_tensors_ask_for_the_dialect(tmp_path):
    shape = (1, 128)  # 36 vs 34 bytes: both pad to 64
    with pytest.raises(DialectError, match="fits both Q2_0 and PQ2_0"):
        dialect_file(tmp_path, "qwen3", [("w", shape, 42, 36), ("n", (4,), 0, 16)])
    f = dialect_file(tmp_path, "qwen3", [("w", shape, 42, 36), ("n", (4,), 0, 16)], dialect="prism-legacy")
    assert f.codec_name("w") == "pq2_0"


# -- hostile files (§1.7, P20) -----------------------------------------------------------------


def small_file(tmp_path) -> bytes:
    kvs = [("general.architecture", "llama", V.STRING), ("t.toks", ["a", "bc", ""], V.ARRAY),
           ("t.n", np.arange(3, dtype=np.int16), V.ARRAY), ("t.nest", [["x"], np.ones(2, np.uint8)], V.ARRAY),
           ("t.f", 2.5, V.FLOAT32), ("t.b", True, V.BOOL)]
    a = np.arange(8, dtype=np.float32)
    b = tq_bytes((1, 256), QT.TQ2_0)
    return write(tmp_path / "small.gguf", kvs, [("a", a.shape, 0, a), ("b", (1, 256), 35, b)]).read_bytes()


def test_every_truncation_is_an_error(tmp_path):
    blob = small_file(tmp_path)
    GGUFFile(tmp_path / "small.gguf").close()
    p = tmp_path / "cut.gguf"
    for n in range(len(blob)):
        p.write_bytes(blob[:n])
        with pytest.raises(BitpackError) as info:
            GGUFFile(p)
        assert str(info.value).startswith(f"{p}: ") and "\n" not in str(info.value)


def test_truncated_tensor_data_names_the_tensor(tmp_path):
    blob = small_file(tmp_path)
    f = GGUFFile(tmp_path / "small.gguf")
    t = f.tensor("b")
    f.close()
    with pytest.raises(ContainerError) as info:
        open_bytes(tmp_path, blob[:-1])
    assert str(info.value) == (f"{tmp_path / 'model.gguf'}: tensor 'b' data (offset {t.data_offset}, "
                               f"{t.nbytes} bytes) runs past the end of the file ({len(blob) - 1} bytes)")


F32_DATA = bytes(64)  # one (2, 8) F32 tensor


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"GGUX" + bytes(40), r"not a GGUF file: the magic at offset 0 is 47 47 55 58"),
        (b"", r"file ends at byte 0 inside the magic bytes"),
        (raw_gguf(version=2), r"GGUF version 2 is not supported"),
        (raw_gguf(version=0x03000000), r"big-endian GGUF file"),
        (raw_gguf(version=7), r"unsupported GGUF version 7"),
        (raw_gguf(n_kv=2**62), r"declares 0 tensors and 4611686018427387904 key/value pairs"),
        (raw_gguf([kv_bytes("k", V.STRING, struct.pack("<Q", 2**63) + b"abc")]),
         r"the value of 'k' at offset \d+ declares 9223372036854775808 bytes, but only \d+ remain"),
        (raw_gguf([kv_bytes("k", V.ARRAY, struct.pack("<IQ", V.UINT32, 2**40))]),
         r"the value of 'k' at offset \d+ declares 1099511627776 elements"),
        (raw_gguf([kv_bytes("k", V.ARRAY, struct.pack("<IQ", V.STRING, 2**40) + bytes(64))]),
         r"declares 1099511627776 elements"),
        (raw_gguf([kv_bytes("k", V.ARRAY, struct.pack("<IQ", V.STRING, 2) + gstr("a") + struct.pack("<Q", 99))]),
         r"array of 2 strings starting at offset \d+\) runs past the end"),
        (raw_gguf([kv_bytes("k", V.ARRAY, struct.pack("<IQ", V.STRING, 2) + struct.pack("<Q", 2**64 - 1) * 2)]),
         r"array of 2 strings starting at offset \d+\) runs past the end"),
        (raw_gguf([kv_bytes("k", 13, b"\0" * 8)]), r"'k' has unknown value type 13"),
        (raw_gguf([kv_bytes("k", V.BOOL, b"\x02")]), r"is a BOOL with byte value 2"),
        (raw_gguf([kv_bytes("k", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1) * 20 + bytes(8))]), r"nests arrays"),
        (raw_gguf([kv_bytes("k", V.UINT8, b"\1"), kv_bytes("k", V.UINT8, b"\2")]), r"duplicate key 'k' at offset"),
        (raw_gguf([kv_bytes("general.alignment", V.UINT32, struct.pack("<I", 48))]), r"48, not a power of two"),
        (raw_gguf([kv_bytes("general.alignment", V.UINT64, struct.pack("<Q", 64))]), r"must be a UINT32"),
        (raw_gguf([], [info_bytes("w", (8, 2, 1, 1, 1), 0, 0)], F32_DATA), r"'w' at offset 24 has n_dims 5"),
        (raw_gguf([], [info_bytes("w", (8, 0), 0, 0)], F32_DATA), r"has ne \[8, 0\]; every dimension"),
        (raw_gguf([], [info_bytes("w", (2**32, 2**32), 0, 0)], F32_DATA), r"overflows 64 bits"),
        (raw_gguf([], [info_bytes("w", (8, 2), 0, 0), info_bytes("w", (8, 2), 0, 64)], F32_DATA * 2),
         r"duplicate tensor name 'w'"),
        (raw_gguf([], [info_bytes("x" * 64, (8, 2), 0, 0)], F32_DATA), r"is 64 bytes; ggml allows at most 63"),
        (raw_gguf([], [info_bytes("w", (8, 2), 0, 16)], F32_DATA + bytes(16)), r"'w' has offset 16, not a multiple"),
        (raw_gguf([], [info_bytes("w", (8, 2), 0, 0), info_bytes("v", (8, 2), 0, 96)], F32_DATA + bytes(96)),
         r"'v' has offset 96, expected 64"),
        (raw_gguf([], [info_bytes("w", (8, 2), 0, 0)], F32_DATA[:-1]), r"'w' data \(offset \d+, 64 bytes\) runs past"),
        (raw_gguf([], [info_bytes("w", (8, 2), 0, 2**60)], F32_DATA), r"data offset 1152921504606846976"),
        (raw_gguf([], [info_bytes("w", (100, 2), 8, 0)], bytes(256)), r"type Q8_0 but ne \[100, 2\]"),
    ],
    ids=lambda x: None if isinstance(x, bytes) else x[:28],
)
def test_hostile_files(tmp_path, blob, message):
    with pytest.raises(ContainerError, match=message) as info:
        open_bytes(tmp_path, blob)
    assert "\n" not in str(info.value)


def test_offset_gaps_are_warnings_in_bitnet_cpp_2024(tmp_path, recwarn):
    # the 2024-25 fork only checks bounds (§1.4): type 36 marks the file as that dialect
    infos = [info_bytes("i", (128, 32), 36, 0), info_bytes("w", (8, 2), 0, 1088)]
    f = open_bytes(tmp_path, raw_gguf([], infos, bytes(1088 + 64)))
    assert f.dialect == "bitnet-cpp-2024" and len(f.warnings) == 1
    assert "'w' has offset 1088, expected 1056" in f.warnings[0]
    assert len(recwarn) == 0  # reported as bitpack's own warning, never a Python warning with a source line
    assert f.raw("w").nbytes == 64
    # ... but data outside the file is still an error
    with pytest.raises(ContainerError, match="runs past the end"):
        open_bytes(tmp_path, raw_gguf([], infos, bytes(1088 + 63)))


def test_missing_file_is_a_container_error(tmp_path):
    with pytest.raises(ContainerError, match="cannot read the file"):
        GGUFFile(tmp_path / "nope.gguf")
    with pytest.raises(ContainerError, match="no tensor named 'x'"):
        open_bytes(tmp_path, raw_gguf([ARCH_LLAMA])).tensor("x")


def test_large_tokenizer_arrays_parse_fast(tmp_path):
    tokens = [f"tok{i}Ġ" for i in range(128_000)]
    merges = [f"a{i} b{i}" for i in range(280_000)]
    path = write(tmp_path / "tok.gguf", [("tokenizer.ggml.tokens", tokens, V.ARRAY),
                                        ("tokenizer.ggml.merges", merges, V.ARRAY),
                                        ("tokenizer.ggml.scores", np.zeros(128_000, np.float32), V.ARRAY)])
    start = time.perf_counter()
    f = GGUFFile(path)
    elapsed = time.perf_counter() - start
    assert f.kv["tokenizer.ggml.tokens"] == tokens and f.kv["tokenizer.ggml.merges"] == merges
    assert elapsed < 3.0  # ~0.2 s on a 2-core machine; a per-element pathology would take far longer


# -- the writer -------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exception_mid_write_leaves_nothing(tmp_path):
    a = np.zeros((4, 8), np.float32)
    with pytest.raises(RuntimeError, match="boom"), GGUFWriter(tmp_path / "out.gguf") as w:
        w.add_tensor("a", a.shape, 0, a.nbytes)
        w.add_tensor("b", a.shape, 0, a.nbytes)
        w.write_header()
        w.write_tensor("a", a)
        assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".out.gguf.")
        assert leftovers(tmp_path)[0].endswith(".part")
        raise RuntimeError("boom")
    assert leftovers(tmp_path) == []
    w = GGUFWriter(tmp_path / "out.gguf")
    w.add_tensor("a", a.shape, 0, a.nbytes)
    w.write_header()
    w.abort()
    w.abort()
    assert leftovers(tmp_path) == []


def test_writer_refusals(tmp_path):
    a = np.zeros((4, 8), np.float32)
    w = GGUFWriter(tmp_path / "out.gguf")
    w.add_kv("k", 1, V.UINT32)
    with pytest.raises(ContainerError, match="duplicate key 'k'"):
        w.add_kv("k", 2, V.UINT32)
    with pytest.raises(ContainerError, match="not a valid UINT8"):
        w.add_kv("big", 256, V.UINT8)
    with pytest.raises(ContainerError, match="do not fit INT8"):
        w.add_kv("arr", [1, 200], V.ARRAY, V.INT8)
    with pytest.raises(ContainerError, match="disagrees"):
        w.add_kv("general.alignment", 64, V.UINT32)
    w.add_tensor("a", a.shape, 0, a.nbytes)
    w.add_tensor("b", a.shape, 0, a.nbytes)
    with pytest.raises(ContainerError, match="duplicate tensor name 'a'"):
        w.add_tensor("a", a.shape, 0, a.nbytes)
    with pytest.raises(ContainerError, match="is 64 bytes; ggml allows at most 63"):
        w.add_tensor("n" * 64, a.shape, 0, a.nbytes)
    with pytest.raises(ContainerError, match="1 to 4 dimensions"):
        w.add_tensor("c", (1, 1, 1, 1, 1), 0, 4)
    w.write_header()
    with pytest.raises(ContainerError, match="only possible before write_header"):
        w.add_tensor("c", a.shape, 0, a.nbytes)
    with pytest.raises(ContainerError, match="'b' is out of order: 'a' is next"):
        w.write_tensor("b", a)
    with pytest.raises(ContainerError, match="'zz' was not declared"):
        w.write_tensor("zz", a)
    with pytest.raises(ContainerError, match="got 124 bytes of data, declared 128"):
        w.write_tensor("a", a.tobytes()[:-4])
    w.write_tensor("a", a)
    with pytest.raises(ContainerError, match="1 declared tensors were not written, first 'b'"):
        w.close()
    w.write_tensor("b", a[::-1])  # non-contiguous: copied for this tensor only
    w.close()
    f = GGUFFile(tmp_path / "out.gguf")
    assert f.raw("b").nbytes == 128 and leftovers(tmp_path) == ["out.gguf"]


def test_writer_takes_a_tensor_in_parts(tmp_path):
    """write_part: a tensor's bytes a piece at a time, padding only before its first piece."""
    a = np.arange(37, dtype=np.uint8)
    w = GGUFWriter(tmp_path / "out.gguf")
    w.add_tensor("a", (37,), 24, 37)  # I8: 37 bytes, so "b" starts after padding
    w.add_tensor("b", (37,), 24, 37)
    w.write_header()
    w.write_part("a", a[:10])
    w.write_part("a", a[10:11])
    with pytest.raises(ContainerError, match="11 of its bytes are already written in parts"):
        w.write_tensor("a", a)
    with pytest.raises(ContainerError, match="got 48 bytes of data, declared 37"):
        w.write_part("a", a)
    with pytest.raises(ContainerError, match="'b' is out of order: 'a' is next"):
        w.write_part("b", a)
    w.write_part("a", a[11:])
    with pytest.raises(ContainerError, match="1 declared tensors were not written, first 'b'"):
        w.close()
    w.write_part("b", a[:30])
    with pytest.raises(ContainerError, match="1 declared tensors were not written, first 'b'"):
        w.close()
    w.write_part("b", a[30:])
    w.close()
    f = GGUFFile(tmp_path / "out.gguf")
    assert f.raw("a").tobytes() == a.tobytes() == f.raw("b").tobytes()


def test_released_pages_are_read_again(tmp_path):
    """release(name, start, stop) drops a byte range's pages (rounded out to whole pages); a view
    taken before still reads the same bytes."""
    data = np.arange(3 * 4096 + 17, dtype=np.uint32).view(np.uint8)
    with GGUFWriter(tmp_path / "out.gguf") as w:
        w.add_tensor("a", (data.size,), 24, data.size)  # I8
        w.write_header()
        w.write_tensor("a", data)
    f = GGUFFile(tmp_path / "out.gguf")
    view = f.raw("a")
    for start, stop in ((5000, 9000), (0, 1), (data.size - 3, None), (0, 10 * data.size)):
        f.release("a", start, stop)
        assert np.array_equal(view, data)
    f.close()


def test_write_in_order_writes_parts_in_order_and_calls_done_once():
    from types import SimpleNamespace

    from bitpack.parallel import write_in_order

    log = []
    whole = SimpleNamespace(name="w", produce=lambda: np.zeros(3, np.uint8), done=lambda: log.append("done w"))
    parts = [lambda i=i: np.full(2, i, np.uint8) for i in range(5)]
    split = SimpleNamespace(name="s", produce=None, parts=parts, done=lambda: log.append("done s"))
    write_in_order([split, whole], lambda n, d: log.append(("whole", n, d.tolist())),
                   lambda n, nbytes: log.append(("progress", n, nbytes)),
                   lambda n, d: log.append(("part", n, d.tolist())))
    assert log == [*(("part", "s", [i, i]) for i in range(5)), "done s", ("progress", "s", 10),
                   ("whole", "w", [0, 0, 0]), "done w", ("progress", "w", 3)]
    log.clear()
    split.produce = lambda: np.concatenate([p() for p in parts])
    write_in_order([split], lambda n, d: log.append(("whole", n, d.tolist())))  # a writer without parts
    assert log == [("whole", "s", [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]), "done s"]


def test_writer_checks_sizes_against_a_dialect(tmp_path):
    w = GGUFWriter(tmp_path / "out.gguf", dialect="bitnet-cpp-2024")
    with pytest.raises(ContainerError, match="I2_S \\(32, 128\\) takes 1056 bytes in bitnet-cpp-2024, not 1024"):
        w.add_tensor("q", (32, 128), 36, 1024)


def test_writer_alignment_64(tmp_path):
    a = np.arange(5, dtype=np.float32)
    path = write(tmp_path / "a64.gguf", [("general.architecture", "llama", V.STRING)],
                 [("a", a.shape, 0, a), ("b", a.shape, 0, a)], alignment=64)
    f = GGUFFile(path)
    assert f.alignment == 64 and f.kv["general.alignment"] == 64
    assert f.data_start % 64 == 0 and [t.offset for t in f.tensors] == [0, 64]
    r = gguf.GGUFReader(path)
    assert r.alignment == 64 and [int(t.data_offset) for t in r.tensors] == [t.data_offset for t in f.tensors]


def test_kv_only_file_and_empty_values(tmp_path):
    path = write(tmp_path / "kv.gguf", [("s", "", V.STRING), ("a", [], V.ARRAY, V.INT32)])
    f = GGUFFile(path)
    assert f.kv["s"] == "" and f.kv["a"].dtype == np.int32 and f.tensors == []
    assert os.path.getsize(path) == f.data_start


def test_corrupted_bytes_never_escape_as_other_exceptions(tmp_path):
    """Random byte damage: the file either parses or raises BitpackError, nothing else (P20)."""
    blob = small_file(tmp_path)
    rng = np.random.default_rng(7)
    p = tmp_path / "fuzz.gguf"
    outcomes = set()
    for _ in range(300):
        b = bytearray(blob)
        for i in rng.integers(0, len(b), size=rng.integers(1, 4)):
            b[i : i + 8] = rng.choice([b"\xff" * 8, bytes(8), bytes([rng.integers(256)])])
        p.write_bytes(bytes(b[: len(blob)]))
        try:
            with warnings.catch_warnings(action="ignore"), GGUFFile(p) as f:
                for t in f.tensors:
                    if t.nbytes is not None:
                        f.raw(t)
            outcomes.add("parsed")
        except BitpackError:
            outcomes.add("refused")
    assert outcomes == {"parsed", "refused"}


def test_closed_file_refuses_raw(tmp_path):
    a = np.arange(4, dtype=np.float32)
    with GGUFFile(write(tmp_path / "c.gguf", [], [("a", a.shape, 0, a)])) as f:
        view = f.raw("a")
    assert view.tolist() == list(a.view(np.uint8))  # views outlive close()
    with pytest.raises(ContainerError, match="closed"):
        f.raw("a")


@pytest.mark.parametrize("offsets", [(0, 0), (0, 512), (1056, 0)], ids=["same bytes", "overlapping", "out of order"])
def test_overlapping_or_out_of_order_tensors_are_refused_in_every_dialect(tmp_path, offsets):
    # two I2_S tensors (1056 bytes each, a bitnet-cpp-2024 file) that share bytes or run backwards
    infos = [info_bytes("a", (128, 32), 36, offsets[0]), info_bytes("b", (128, 32), 36, offsets[1])]
    with pytest.raises(ContainerError, match="tensors overlap or are out of order") as info:
        open_bytes(tmp_path, raw_gguf([], infos, bytes(4096)))
    assert "\n" not in str(info.value)
