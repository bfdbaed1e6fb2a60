"""GGUF -> GGUF for architectures bitpack does not run (qwen35, gemma3, expert tensors): ternary
tensors re-encoded exactly or refused, everything else and every metadata key copied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitpack import parallel
from bitpack.codecs import get_codec
from bitpack.containers.gguf_kv import ValueType as V
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.gguf_write import GGUFWriter
from bitpack.errors import BitpackError
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.verify import verify

RNG = np.random.default_rng(7)
MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def ternary(shape):
    return RNG.integers(-1, 2, size=shape, dtype=np.int8)


def foreign_gguf(path, *, uniform_rows=False, rotated=False):
    """A mainline-style qwen35 file: an F32 norm, a TQ2_0 projection with differing fp16 block
    scales, a 3-D TQ2_0 expert tensor (4 experts x 64 rows), and assorted metadata."""
    tq2 = get_codec("tq2_0")
    attn = ternary((64, 512))
    attn_scales = np.array([[0.5, 0.25]] * 64, dtype=np.float32)
    if uniform_rows:
        attn_scales[:] = 0.5
    experts = ternary((4, 64, 256))
    norm = RNG.standard_normal(512).astype(np.float32)
    with GGUFWriter(path) as w:
        w.add_kv("general.architecture", "qwen35", V.STRING)
        w.add_kv("general.name", "tiny-moe", V.STRING)
        w.add_kv("general.file_type", 37, V.UINT32)
        w.add_kv("qwen35.block_count", 1, V.UINT32)
        w.add_kv("qwen35.rope.freq_base", 1e6, V.FLOAT32)
        if rotated:  # Bonsai 2: weights stored Hadamard-rotated (qwen3.md §9)
            w.add_kv("prism.hadamard.block_size", 128, V.UINT32)
        w.add_kv("tokenizer.ggml.tokens", ["<s>", "a", "b"], V.ARRAY)
        w.add_kv("tokenizer.ggml.scores", np.array([0.0, -1.5, -2.0], dtype=np.float32), V.ARRAY)
        w.add_tensor("blk.0.attn_norm.weight", (512,), 0, 2048)
        w.add_tensor("blk.0.attn_q.weight", (64, 512), 35, tq2.nbytes((64, 512)))
        w.add_tensor("blk.0.ffn_up_exps.weight", (4, 64, 256), 35, tq2.nbytes((256, 256)))
        w.write_header()
        w.write_tensor("blk.0.attn_norm.weight", norm)
        w.write_tensor("blk.0.attn_q.weight", tq2.encode(attn, attn_scales))
        w.write_tensor("blk.0.ffn_up_exps.weight", tq2.encode(experts.reshape(256, 256), np.float32(0.125)))
    return path


@pytest.mark.parametrize("target", ["q2_0", "pq2_0", "tq1_0"])
def test_a_foreign_architecture_repacks_exactly(tmp_path, target):
    src = foreign_gguf(tmp_path / "src.gguf")
    out = tmp_path / f"out-{target}.gguf"
    report = convert(src, target, ConvertOptions(output=out))
    assert report["architecture"] == "qwen35"
    assert any("does not know architecture 'qwen35'" in w for w in report["warnings"])
    with GGUFFile(src) as a, GGUFFile(out) as b:
        own = ("general.file_type", "general.alignment")
        copied = {k: v for k, v in a.kv.items() if k not in own and not k.startswith("bitpack.")}
        for key, value in copied.items():  # every source key, value and type, unchanged
            assert b.kv_types[key] == a.kv_types[key]
            assert np.array_equal(b.kv[key], value) if isinstance(value, np.ndarray) else b.kv[key] == value
        assert b.kv["bitpack.codec"] == target and b.codec_name("blk.0.ffn_up_exps.weight") == target
        assert b.shape("blk.0.ffn_up_exps.weight") == (4, 64, 256)  # experts keep their shape
        assert np.array_equal(b.raw("blk.0.attn_norm.weight"), a.raw("blk.0.attn_norm.weight"))
    result = verify(src, out)
    assert result["identical"] is True and result["logits_compared"] is False
    assert "logits were not compared" in result["note"]


def test_a_coarser_target_is_refused_naming_the_tensor_and_group(tmp_path):
    src = foreign_gguf(tmp_path / "src.gguf")
    with pytest.raises(BitpackError, match=r"iq2_bn cannot hold 1 tensors .*blk.0.attn_q.weight: .*row 0 holds "
                                           r"weights with different scales 0.25, 0.5"):
        convert(src, "iq2_bn", ConvertOptions(output=tmp_path / "x.gguf"))
    assert not (tmp_path / "x.gguf").exists()
    uniform = foreign_gguf(tmp_path / "uniform.gguf", uniform_rows=True)
    convert(uniform, "iq2_bn", ConvertOptions(output=tmp_path / "y.gguf"))
    assert verify(uniform, tmp_path / "y.gguf")["identical"] is True


def test_a_repack_that_changed_a_tensor_is_not_identical(tmp_path):
    src = foreign_gguf(tmp_path / "src.gguf")
    out = tmp_path / "out.gguf"
    convert(src, "q2_0", ConvertOptions(output=out))
    other = foreign_gguf(tmp_path / "other.gguf")  # new random codes under the same names
    result = verify(other, out)
    assert result["identical"] is False and "blk.0.attn_q.weight" in result["differing_tensors"]


def test_inspect_lists_a_foreign_architecture_from_the_header(tmp_path):
    from bitpack.pipelines.inspect import inspect

    report = inspect(foreign_gguf(tmp_path / "src.gguf"))
    assert report["architecture"] == "qwen35" and report["dialect"] == "mainline"
    rows = {t["name"]: t for t in report["tensors"]}
    assert rows["blk.0.ffn_up_exps.weight"]["codec"] == "tq2_0" and rows["blk.0.ffn_up_exps.weight"]["shape"] == [4, 64, 256]
    assert rows["blk.0.attn_norm.weight"]["type"] == "F32" and rows["blk.0.attn_norm.weight"]["codec"] is None
    assert any("does not run architecture 'qwen35'" in w for w in report["warnings"])


def test_the_command_line_inspects_and_repacks_a_foreign_architecture(tmp_path):
    from cli_runner import bitpack

    src = foreign_gguf(tmp_path / "src.gguf")
    shown = bitpack("inspect", src)
    assert shown.returncode == 0, shown.stderr
    assert "blk.0.ffn_up_exps.weight  4x64x256  tq2_0" in shown.stdout
    done = bitpack("convert", src, "--to", "pq2_0", "-o", tmp_path / "p.gguf", "--verify")
    assert done.returncode == 0 and "verified" in done.stdout, done.stderr


def test_merging_scales_is_explicit_reported_and_not_called_identical(tmp_path):
    src = foreign_gguf(tmp_path / "src.gguf")
    out = tmp_path / "merged.gguf"
    report = convert(src, "iq2_bn", ConvertOptions(output=out, allow_scale_merge=True))
    [note] = [n for n in report["rounded"] if n.startswith("blk.0.attn_q.weight")]
    assert "scales merged" in note and "largest merged scale ratio 2" in note
    with GGUFFile(out) as f:  # codes kept; every row's scale the least-squares one
        codes, scale = get_codec("iq2_bn").decode(f.raw("blk.0.attn_q.weight"), (64, 512))
    n = (codes != 0).reshape(64, 2, 256).sum(axis=2)
    want = (n[:, 0] * 0.5 + n[:, 1] * 0.25) / n.sum(axis=1)
    np.testing.assert_allclose(scale[:, 0], want.astype(np.float32), rtol=0)
    result = verify(src, out)
    assert result["identical"] is False and result["differing_tensors"] == ["blk.0.attn_q.weight"]


def test_rotated_weights_go_only_to_a_runtime_that_undoes_the_rotation(tmp_path):
    src = foreign_gguf(tmp_path / "rot.gguf", rotated=True)
    with GGUFFile(src) as f:
        src_kv = dict(f.kv)
    # q2_0 would default to mainline, which ignores the rotation: prism runs q2_0 too and undoes it
    report = convert(src, "q2_0", ConvertOptions(output=tmp_path / "q.gguf"))
    assert report["dialect"] == "prism"
    with GGUFFile(tmp_path / "q.gguf") as f:
        assert f.kv["prism.hadamard.block_size"] == src_kv["prism.hadamard.block_size"]  # carried
    with pytest.raises(BitpackError, match=r"Hadamard-rotated \(key prism.hadamard.block_size\).*--allow-rotated"):
        convert(src, "q2_0", ConvertOptions(output=tmp_path / "m.gguf", dialect="mainline"))
    assert not (tmp_path / "m.gguf").exists()
    forced = convert(src, "q2_0", ConvertOptions(output=tmp_path / "m.gguf", dialect="mainline", allow_rotated=True))
    assert forced["dialect"] == "mainline"
    with pytest.raises(BitpackError, match="Hadamard-rotated"):
        convert(src, "iq2_bn", ConvertOptions(output=tmp_path / "ik.gguf", allow_scale_merge=True))


def test_inspect_says_who_computes_a_rotated_file_correctly(tmp_path):
    from bitpack.pipelines.inspect import inspect

    report = inspect(foreign_gguf(tmp_path / "rot.gguf", rotated=True))
    assert any("Hadamard-rotated (prism.hadamard.block_size)" in w and "PrismML" in w for w in report["warnings"])


def test_a_merge_is_recorded_in_the_receipt(tmp_path):
    import json

    src = foreign_gguf(tmp_path / "src.gguf")
    report = convert(src, "iq2_bn", ConvertOptions(output=tmp_path / "m.gguf", allow_scale_merge=True))
    receipt = json.loads(open(report["receipt"]).read())
    assert any("scales merged" in n for n in receipt["target"]["config"]["lossy"])


def block_scaled_gguf(tmp_path):
    """bitnet-f32-sharded as TQ2_0 whose 256-blocks have different fp16 scales: a model of a
    graph bitpack runs, with group scales (what a group-scaled producer writes)."""
    from bitpack.codecs._scales import coarsest

    base = tmp_path / "uniform.gguf"
    convert(MODELS / "bitnet-f32-sharded", "tq2_0", ConvertOptions(output=base, allow_scale_rounding=True))
    rng = np.random.default_rng(3)
    tq2 = get_codec("tq2_0")
    out = tmp_path / "grouped.gguf"
    with GGUFFile(base) as f, GGUFWriter(out) as w:
        for key, value in f.kv.items():
            if key != "general.alignment":
                w.add_kv(key, value, f.kv_types[key])
        data = {}
        for t in f.tensors:
            if t.name.endswith(".scale"):  # the exact F32 companions: the block scales carry it now
                continue
            raw = f.raw(t)
            if f.codec_name(t) == "tq2_0":
                codes, _ = tq2.decode(raw, t.shape)
                scales = np.exp2(rng.uniform(-6, -2, (t.shape[0], t.shape[1] // 256))).astype(np.float16)
                raw = tq2.encode(codes, scales.astype(np.float32))
                assert np.ndim(coarsest(scales.astype(np.float32), codes)) == 2  # truly per block
            data[t.name] = (t.shape, t.type_id, np.asarray(raw))
            w.add_tensor(t.name, t.shape, t.type_id, data[t.name][2].nbytes)
        w.write_header()
        for name, (_, _, raw) in data.items():
            w.write_tensor(name, raw)
    return out


@pytest.mark.parametrize("target", ["int8", "i2_packed"])
def test_group_scales_survive_bitpacks_own_hf_layouts(tmp_path, target):
    from bitpack.containers.safetensors_read import Checkpoint

    src = block_scaled_gguf(tmp_path)
    hf = convert(src, target, ConvertOptions(output=tmp_path / target))["output"]
    ckpt = Checkpoint(Path(hf))
    k = ckpt.info("model.layers.0.mlp.down_proj.weight_scale").shape
    assert ckpt.info("model.layers.0.mlp.down_proj.weight_scale").dtype == "F32"
    assert len(k) == 2 and k[1] > 1  # one scale per 256-block of every row
    assert verify(src, hf)["identical"] is True
    back = convert(hf, "q2_0", ConvertOptions(output=tmp_path / "g64.gguf"))["output"]  # refined: exact
    assert verify(src, back)["identical"] is True
    with pytest.raises(BitpackError, match="hf_packed keeps one scale per tensor"):
        convert(hf, "hf_packed", ConvertOptions(output=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()


def group_gguf(path, codec_name, *, corrupt_row=None):
    """A qwen35 file of one group-scale codec: a 3-D expert tensor (4 experts x 24 rows x 384)
    and a 50 x 256 projection, with all-zero groups, a d = 0 block and differing fp16 scales."""
    codec = get_codec(codec_name)
    tensors = {"blk.0.ffn_up_exps.weight": (4, 24, 384), "blk.0.attn_q.weight": (50, 256)}
    with GGUFWriter(path) as w:
        w.add_kv("general.architecture", "qwen35", V.STRING)
        for name, shape in tensors.items():
            w.add_tensor(name, shape, next(iter(codec.type_ids.values())), codec.type_nbytes(shape))
        w.write_header()
        for name, shape in tensors.items():
            rows, k = int(np.prod(shape[:-1])), shape[-1]
            codes = ternary((rows, k))
            codes[::7, :64] = 0
            scales = np.exp2(RNG.integers(-12, 0, size=(rows, k // codec.group_size))).astype(np.float32)
            data = codec.encode(codes, scales).reshape(rows, -1)
            data[3, :2] = 0  # a block with d = 0 over nonzero codes: they decode to 0
            if corrupt_row is not None and name == "blk.0.attn_q.weight":
                data[corrupt_row, 2] = 0xFF  # four codes 3
            w.write_tensor(name, data)
    return path


@pytest.mark.parametrize(("source", "target", "options"), [
    ("pq2_0", "q2_0", {}), ("pq2_0", "ptq1_0", {}), ("pq2_0", "iq2_bn", {"allow_scale_merge": True}),
    ("q2_0", "pq2_0", {"allow_scale_merge": True})])
def test_a_tensor_converted_in_parts_is_the_tensor_converted_whole(tmp_path, monkeypatch, source, target, options):
    import bitpack.models.gguf_repack as repack

    src = group_gguf(tmp_path / "src.gguf", source)
    written = {}
    for part_weights in (1 << 30, 1000):  # whole, then blocks of 2 or 3 rows
        monkeypatch.setattr(parallel, "PART_WEIGHTS", part_weights)
        out = tmp_path / f"out-{part_weights}.gguf"
        convert(src, target, ConvertOptions(output=out, receipt=False, **options))
        written[part_weights] = out.read_bytes()
        with GGUFFile(src) as f:
            plan = repack.plan_repack(f, target, **options)
            parts = {t.name: len(t.parts or ()) for t in plan.tensors}
        split = get_codec(target).row_bytes(384) is not None and part_weights == 1000
        assert parts == ({"blk.0.ffn_up_exps.weight": 48, "blk.0.attn_q.weight": 17} if split else
                         {"blk.0.ffn_up_exps.weight": 0, "blk.0.attn_q.weight": 0})
    assert written[1000] == written[1 << 30]
    with GGUFFile(tmp_path / "out-1000.gguf") as f:
        assert f.shape("blk.0.ffn_up_exps.weight") == (4, 24, 384)


def test_corrupt_codes_in_a_part_name_the_tensor_and_rows(tmp_path, monkeypatch):

    monkeypatch.setattr(parallel, "PART_WEIGHTS", 2560)  # ten rows of 256 at a time
    src = group_gguf(tmp_path / "src.gguf", "pq2_0", corrupt_row=23)
    out = tmp_path / "out.gguf"
    with pytest.raises(BitpackError, match=r"blk.0.attn_q.weight, rows 20-29 \(positions counted from row 20\): "
                                           r"pq2_0 data has the invalid 2-bit code 3 in byte 192"):
        convert(src, "q2_0", ConvertOptions(output=out, receipt=False))
    assert not out.exists()


def test_a_coarser_target_is_checked_a_part_at_a_time_and_refused_as_before(tmp_path, monkeypatch):
    """q2_0 -> pq2_0 is exact only where the two halves of a 128-group share d: checked a block
    of rows at a time when they do; a tensor where they do not is decoded whole and refused
    naming its row, as before."""
    import bitpack.models.gguf_repack as repack

    monkeypatch.setattr(parallel, "PART_WEIGHTS", 1000)
    q2, pq = get_codec("q2_0"), get_codec("pq2_0")
    codes = ternary((40, 256))
    scales = np.repeat(np.exp2(RNG.integers(-8, 0, size=(40, 2))).astype(np.float32), 2, axis=1)
    with GGUFWriter(tmp_path / "src.gguf") as w:
        w.add_kv("general.architecture", "qwen35", V.STRING)
        w.add_tensor("blk.0.attn_q.weight", (40, 256), 42, q2.nbytes((40, 256)))
        w.write_header()
        w.write_tensor("blk.0.attn_q.weight", q2.encode(codes, scales))
    decoded, fits = [], repack._fits_by_parts
    monkeypatch.setattr(repack, "_fits_by_parts", lambda *a: decoded.append(fits(*a)) or decoded[-1])
    convert(tmp_path / "src.gguf", "pq2_0", ConvertOptions(output=tmp_path / "out.gguf", receipt=False))
    with GGUFFile(tmp_path / "out.gguf") as f:
        assert np.array_equal(f.raw("blk.0.attn_q.weight"), pq.encode(codes, scales[:, ::2]))
    assert decoded == [True]  # never decoded whole
    scales[33, 3] /= 2
    with GGUFWriter(tmp_path / "src2.gguf") as w:
        w.add_kv("general.architecture", "qwen35", V.STRING)
        w.add_tensor("blk.0.attn_q.weight", (40, 256), 42, q2.nbytes((40, 256)))
        w.write_header()
        w.write_tensor("blk.0.attn_q.weight", q2.encode(codes, scales))
    with pytest.raises(BitpackError, match=r"blk.0.attn_q.weight: .*row 33, group 1 holds weights with different"):
        convert(tmp_path / "src2.gguf", "pq2_0", ConvertOptions(output=tmp_path / "out2.gguf", receipt=False))
    assert decoded == [True, False]
