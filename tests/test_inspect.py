"""`bitpack inspect`: what a user sees about a model file."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack

from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.inspect import inspect

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def test_inspect_gguf_reports_codec_scale_and_bits(tmp_path):
    out = convert(MODELS / "b158-packed", "tl2", ConvertOptions(output=tmp_path / "m.gguf"))
    report = inspect(out["output"])
    for key in ("path", "container", "dialect", "architecture", "hparams", "tensors", "bits_per_weight", "warnings"):
        assert key in report
    assert report["container"] == "gguf" and report["architecture"] == "bitnet-b1.58"
    q = next(t for t in report["tensors"] if t["name"] == "blk.0.attn_q.weight")
    assert q["codec"] == "tl2" and q["params"] == {"BM": 256, "BK": 96, "bm": 32}
    assert q["shape"] == [256, 256] and 1.6 < q["bits_per_weight"] < 2.1
    assert isinstance(q["scale"], float) and q["scale"] > 0
    assert abs(sum(q["fractions"].values()) - 1) < 1e-3
    norm = next(t for t in report["tensors"] if t["name"] == "output_norm.weight")
    assert norm["dtype"] == "F32" and norm["bits_per_weight"] == 32


def test_inspect_warns_about_all_zero_projections(tmp_path):
    src = tmp_path / "zeroed"
    shutil.copytree(MODELS / "b158-packed", src)
    from bitpack.containers.safetensors_read import Checkpoint
    from bitpack.containers.safetensors_write import SafetensorsWriter

    ckpt = Checkpoint(src)
    names = ckpt.names()
    arrays = {n: np.array(ckpt.raw(n)) for n in names}
    infos = {n: ckpt.info(n) for n in names}
    ckpt.close()
    arrays["model.layers.1.mlp.up_proj.weight"][:] = 0x55  # every weight 0
    (src / "model.safetensors").unlink()
    with SafetensorsWriter(src / "model.safetensors", {"format": "pt"}) as w:
        for n in names:
            w.add(n, infos[n].dtype, infos[n].shape)
        for n in names:
            w.write(n, arrays[n])
    report = inspect(src)
    assert any("blk.1.ffn_up.weight: every weight is zero" in w for w in report["warnings"])


def test_inspect_masters_reports_ternarization(tmp_path):
    report = inspect(MODELS / "b158-bf16")
    q = next(t for t in report["tensors"] if t["name"] == "blk.0.attn_q.weight")
    assert q["dtype"] == "BF16" and q["ternarized"] == "absmean"
    assert report["layout"].startswith("master weights")


def test_inspect_cli_json_is_one_document(tmp_path):
    done = bitpack("inspect", MODELS / "llama-packed", "--json")
    # llama-packed's duplicate quantization_config: read as transformers does, the warning in the document
    assert done.returncode == 0 and done.stderr == ""
    assert any("quantization_config" in w for w in json.loads(done.stdout)["warnings"])
    done = bitpack("inspect", MODELS / "b158-packed", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["architecture"] == "bitnet-b1.58"


@pytest.mark.parametrize("junk", [b"", b"GGUF", b"not a model at all", b"GGUF\x03\x00\x00\x00" + b"\xff" * 16])
def test_inspect_hostile_inputs_exit_2(tmp_path, junk):
    path = tmp_path / "x.gguf"
    path.write_bytes(junk)
    done = bitpack("inspect", path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_inspect_names_the_runtimes_that_read_a_gguf(tmp_path):
    from bitpack.pipelines.convert import ConvertOptions, convert
    from bitpack.pipelines.inspect import inspect

    out = convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=tmp_path / "m.gguf", receipt=False))
    report = inspect(out["output"])
    assert report["dialect"] == "bitnet-cpp-2026" and "bitnet.cpp" in report["read_by"]
    assert inspect(MODELS / "b158-packed")["read_by"] is None  # an HF directory has no dialect
