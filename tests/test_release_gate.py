"""bitpack as a release-pipeline gate: receipts, degenerate-source refusal, stable reports
and exit codes (README "Release gate")."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack as cli

from bitpack import __version__
from bitpack.containers.safetensors_read import SafetensorsFile
from bitpack.errors import BitpackError
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.open import open_model

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MLP0 = [f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def patched_copy(tmp_path: Path, fixture: str, fill: dict[str, bytes | np.ndarray]) -> Path:
    """A copy of a fixture model whose named tensors' bytes are replaced (same size)."""
    folder = tmp_path / fixture
    shutil.copytree(MODELS / fixture, folder)
    path = folder / "model.safetensors"
    with SafetensorsFile(path) as f:
        spans = {name: (f.info(name).offset, f.info(name).nbytes) for name in fill}
    with open(path, "r+b") as fh:
        for name, value in fill.items():
            offset, nbytes = spans[name]
            data = value * (nbytes // len(value)) if isinstance(value, bytes) else np.ascontiguousarray(value).tobytes()
            assert len(data) == nbytes
            fh.seek(offset)
            fh.write(data)
    return folder


# -- receipts -------------------------------------------------------------------------------

def test_gguf_receipt_names_inputs_target_tensors_and_output(tmp_path):
    out = tmp_path / "m.gguf"
    report = convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=out))
    assert report["receipt"] == str(tmp_path / "m.gguf.receipt.json")
    receipt = json.loads(Path(report["receipt"]).read_text())
    assert receipt["bitpack_version"] == __version__
    assert receipt["source"] == {"path": str(MODELS / "b158-packed")}
    inputs = {Path(i["path"]).name: i["sha256"] for i in receipt["inputs"]}
    # the weights, config.json and the tokenizer files the GGUF's tokenizer keys come from
    assert inputs == {p.name: sha256(p) for p in (MODELS / "b158-packed").iterdir()}
    assert receipt["target"]["format"] == "i2_s" and receipt["target"]["config"]["dialect"] == "bitnet-cpp-2026"
    assert receipt["output"] == {"path": str(out), "sha256": sha256(out)}
    ternary = [t for t in receipt["tensors"] if t["codec"] == "i2_s"]
    assert len(ternary) == 14 and all(t["bits_per_weight"] == pytest.approx(2.0, abs=0.01) for t in ternary)
    assert {t["name"] for t in receipt["tensors"]} == {t["name"] for t in report["tensors"]}
    assert receipt["verify"] is None


def test_directory_receipt_hashes_every_file_and_the_manifest(tmp_path):
    out = tmp_path / "packed"
    report = convert(MODELS / "b158-bf16", "hf_packed", ConvertOptions(output=out))
    receipt = json.loads(Path(report["receipt"]).read_text())
    files = receipt["output"]["files"]
    assert {f["path"] for f in files} == {p.name for p in out.iterdir()}
    for f in files:
        assert f["sha256"] == sha256(out / f["path"])
    manifest = "".join(f"{f['sha256']}  {f['path']}\n" for f in files)
    assert receipt["output"]["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    packed = [t for t in receipt["tensors"] if t["codec"] == "hf_packed"]
    assert packed and all(t["bits_per_weight"] == 2.0 for t in packed)
    assert receipt["target"]["config"]["linear_class"] == "autobitlinear"


def test_verify_result_goes_into_the_receipt(tmp_path):
    report = convert(MODELS / "bitnet-f32-sharded", "tl2", ConvertOptions(output=tmp_path / "m.gguf", verify=True))
    receipt = json.loads(Path(report["receipt"]).read_text())
    assert report["verify"]["identical"] is True
    assert receipt["verify"] == json.loads(json.dumps(report["verify"]))
    assert {Path(i["path"]).name for i in receipt["inputs"]} == {p.name for p in (MODELS / "bitnet-f32-sharded").iterdir()}
    assert receipt["target"]["config"]["tiles"]


def test_no_receipt_when_asked(tmp_path):
    report = convert(MODELS / "b158-packed", "tq2_0", ConvertOptions(output=tmp_path / "m.gguf", receipt=False))
    assert report["receipt"] is None
    assert not (tmp_path / "m.gguf.receipt.json").exists()


# -- degenerate sources -----------------------------------------------------------------------

def test_all_zero_packed_projections_are_refused_naming_them(tmp_path):
    src = patched_copy(tmp_path, "b158-packed", {n: b"\x55" for n in MLP0})
    out = tmp_path / "m.gguf"
    with pytest.raises(BitpackError) as err:
        convert(src, "i2_s", ConvertOptions(output=out))
    text = str(err.value)
    assert "3 degenerate ternary projections" in text
    for name in ("blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"):
        assert f"{name}: every weight is zero" in text
    assert "revision" in text and "--allow-degenerate" in text
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_allow_degenerate_converts_with_a_warning_per_tensor(tmp_path):
    src = patched_copy(tmp_path, "b158-packed", {MLP0[0]: b"\x55"})
    report = convert(src, "i2_s", ConvertOptions(output=tmp_path / "m.gguf", allow_degenerate=True))
    assert Path(report["output"]).is_file()
    assert any("blk.0.ffn_gate.weight: every weight is zero" in w for w in report["warnings"])


@pytest.mark.parametrize("fill", [b"\x00\x00", np.array([1e-34], "<f4").view("<u2")[1:].tobytes()],
                         ids=["zeros", "denormal-garbage"])
def test_degenerate_master_weights_are_refused(tmp_path, fill):
    src = patched_copy(tmp_path, "b158-bf16", {MLP0[1]: fill})
    with pytest.raises(BitpackError, match=r"blk\.0\.ffn_up\.weight: every weight is zero"):
        convert(src, "tq2_0", ConvertOptions(output=tmp_path / "m.gguf"))


def test_a_negative_scale_is_refused(tmp_path):
    with SafetensorsFile(MODELS / "b158-packed" / "model.safetensors") as f:
        dtype = f.info(MLP0[2] + "_scale").dtype
    half = np.array([-0.5], dtype="<f4")
    value = {"F32": half.tobytes(), "BF16": half.view("<u2")[1:].tobytes()}  # bf16: the high half
    src = patched_copy(tmp_path, "b158-packed", {MLP0[2] + "_scale": value[dtype]})
    with pytest.raises(BitpackError, match=r"blk\.0\.ffn_down\.weight: its scale -0\.5 is not positive"):
        convert(src, "i2_s", ConvertOptions(output=tmp_path / "m.gguf"))


def test_gguf_sources_are_checked_too(tmp_path):
    src = patched_copy(tmp_path, "b158-packed", {MLP0[0]: b"\x55"})
    first = convert(src, "i2_s", ConvertOptions(output=tmp_path / "a.gguf", allow_degenerate=True))
    with pytest.raises(BitpackError, match=r"blk\.0\.ffn_gate\.weight: every weight is zero"):
        convert(first["output"], "tl2", ConvertOptions(output=tmp_path / "b.gguf"))


# -- the command line as a gate ---------------------------------------------------------------

def test_cli_refusal_is_one_line_exit_2_and_no_output(tmp_path):
    src = patched_copy(tmp_path, "b158-packed", {MLP0[0]: b"\x55"})
    out = tmp_path / "m.gguf"
    done = cli("convert", str(src), "--to", "i2_s", "-o", str(out))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("bitpack: error: 1 degenerate ternary projection (blk.0.ffn_gate.weight")
    assert "Traceback" not in done.stderr
    assert not out.exists() and not (tmp_path / "m.gguf.receipt.json").exists()
    allowed = cli("convert", str(src), "--to", "i2_s", "-o", str(out), "--allow-zero-tensors", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert any("every weight is zero" in w for w in json.loads(allowed.stdout)["warnings"])


def test_cli_convert_verify_json_has_the_stable_keys(tmp_path):
    out = tmp_path / "m.gguf"
    done = cli("convert", str(MODELS / "b158-packed"), "--to", "tl2", "-o", str(out), "--verify", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("output", "format", "tensors", "bytes_written", "seconds", "receipt", "verify"):
        assert key in report
    for key in ("identical", "max_abs_diff", "max_rel_diff", "top1_agreement", "kl", "tokens", "numerics",
                "differing_tensors", "passed"):
        assert key in report["verify"]
    assert report["verify"]["identical"] and json.loads(Path(report["receipt"]).read_text())["verify"]["passed"]


# -- the example CI job ------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def gate(*args: str) -> subprocess.CompletedProcess:
    import os

    bindir = str(Path(sys.executable).parent)  # where pip put the `bitpack` script
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(["bash", str(EXAMPLES / "release-gate.sh"), *args], capture_output=True, text=True, env=env)


def test_example_release_gate_passes_a_good_model_and_keeps_the_evidence(tmp_path):
    out = tmp_path / "m.gguf"
    done = gate(str(MODELS / "b158-packed"), "i2_s", str(out))
    assert done.returncode == 0, done.stderr
    assert "release gate passed" in done.stdout
    assert json.loads((tmp_path / "m.gguf.inspect.json").read_text())["container"] == "gguf"
    assert json.loads((tmp_path / "m.gguf.receipt.json").read_text())["output"]["sha256"] == sha256(out)


def test_example_release_gate_fails_a_degenerate_model(tmp_path):
    src = patched_copy(tmp_path, "b158-packed", {MLP0[0]: b"\x55"})
    done = gate(str(src), "tl2", str(tmp_path / "m.gguf"))
    assert done.returncode == 2
    assert "degenerate ternary projection" in done.stderr
    assert not (tmp_path / "m.gguf").exists()


def test_example_workflow_runs_the_gate_for_formats_bitpack_has():
    from bitpack.codecs import list_codecs

    text = (EXAMPLES / "github-actions-release.yml").read_text()
    assert "bash examples/release-gate.sh" in text
    formats = text.split("format: [", 1)[1].split("]", 1)[0].split(", ")
    assert formats and set(formats) <= set(list_codecs())


def _unstaged(name: str) -> str:
    """A file's name, or for a writer's temporary (.<name>.<pid>-<random>.part) its target's."""
    return name[1:].rsplit(".", 2)[0] if name.endswith(".part") else name


def test_input_digests_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    from bitpack.containers import files
    from bitpack.pipelines import receipt

    monkeypatch.setenv("BITPACK_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "src"
    shutil.copytree(MODELS / "b158-packed", src)
    hashed = []
    real = receipt.sha256_file
    for module in (receipt, files):  # the GGUF writer hashes its output itself, during the fsync
        monkeypatch.setattr(module, "sha256_file", lambda p: hashed.append(_unstaged(Path(p).name)) or real(p))
    convert(src, "i2_s", ConvertOptions(output=tmp_path / "a.gguf"))
    first = set(hashed)
    assert "model.safetensors" in first
    hashed.clear()
    convert(src, "tl2", ConvertOptions(output=tmp_path / "b.gguf"))
    assert hashed == ["b.gguf", "b.gguf.kernel_config.ini"]  # only the new outputs; the inputs came from the cache
    with open(src / "config.json", "a") as fh:  # same path, new content
        fh.write("\n")
    hashed.clear()
    report = convert(src, "tq2_0", ConvertOptions(output=tmp_path / "c.gguf"))
    assert sorted(hashed) == ["c.gguf", "config.json"]
    inputs = {Path(i["path"]).name: i["sha256"] for i in json.loads(Path(report["receipt"]).read_text())["inputs"]}
    assert inputs["config.json"] == sha256(src / "config.json")


def test_source_checks_drop_every_tensors_pages():
    """The checks read every master once; each tensor's pages must go right after (a 2B-4T
    conversion otherwise holds the whole 4.8 GB input resident before writing a byte)."""
    from bitpack.models.checks import degenerate_tensors

    model = open_model(MODELS / "b158-bf16")
    released = []
    for e in model.ternary:
        e.release = (lambda name=e.name, real=e.release: (released.append(name), real()))
    assert degenerate_tensors(model) == []
    assert sorted(released) == sorted(e.name for e in model.ternary)


def test_a_replaced_output_loses_its_old_receipt(tmp_path):
    out = tmp_path / "m.gguf"
    convert(MODELS / "b158-packed", "tq2_0", ConvertOptions(output=out))
    assert (tmp_path / "m.gguf.receipt.json").is_file()
    convert(MODELS / "b158-packed", "i2_s", ConvertOptions(output=out, overwrite=True, receipt=False))
    assert not (tmp_path / "m.gguf.receipt.json").exists()


def test_a_tl_outputs_kernel_config_is_in_the_receipt(tmp_path):
    out = tmp_path / "m.gguf"
    receipt = json.loads(Path(convert(MODELS / "b158-packed", "tl2", ConvertOptions(output=out))["receipt"]).read_text())
    files = {f["path"]: f["sha256"] for f in receipt["output"]["files"]}
    assert files == {"m.gguf": sha256(out), "m.gguf.kernel_config.ini": sha256(tmp_path / "m.gguf.kernel_config.ini")}
    assert receipt["output"]["sha256"] == sha256(out)


@pytest.mark.parametrize("codec", ["hf_packed", "i2_s", "int8"])
def test_zero_byte_patterns_agree_with_decoding(codec):
    """Codec.all_zero reads the bytes; it must say exactly what decoding would say."""
    from bitpack.codecs import get_codec

    c = get_codec(codec)
    shape = (64, 512)
    zeros = np.zeros(shape, np.int8)
    assert c.all_zero(c.encode(zeros, np.float32(0.5)), shape) is True
    for flat in (0, 1, 64 * 512 - 1):  # one non-zero code anywhere, first or last byte included
        one = zeros.copy().reshape(-1)
        one[flat] = -1
        assert c.all_zero(c.encode(one.reshape(shape), np.float32(0.5)), shape) is False
    assert get_codec("tq2_0").all_zero(b"", (1, 256)) is None  # no single zero byte: callers decode


def test_the_receipt_names_the_output_hashed_while_it_was_synced(tmp_path, monkeypatch):
    """A GGUF output's digest is computed by its writer during the fsync, and is the file's."""
    from bitpack.pipelines import receipt

    monkeypatch.setenv("BITPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(receipt, "sha256_file", lambda p: pytest.fail(f"{p} hashed again") if p.suffix == ".gguf"
                        else sha256(p))
    report = convert(MODELS / "b158-bf16", "i2_s", ConvertOptions(output=tmp_path / "a.gguf"))
    assert json.loads(Path(report["receipt"]).read_text())["output"]["sha256"] == sha256(tmp_path / "a.gguf")


@pytest.mark.parametrize("source, codec", [("b158-bf16", "int8"), ("b158-bf16", "hf_packed"),
                                           ("qwen3-tied-Q2_0-legacy", "unpacked")])
def test_a_directory_receipt_takes_the_weights_digest_hashed_while_they_were_synced(tmp_path, monkeypatch, request,
                                                                                    source, codec):
    """An HF output's model.safetensors is hashed by its writer during the fsync, not read
    again for the receipt; the small files are hashed afterwards; every digest is the file's."""
    from bitpack.pipelines import receipt

    path = request.getfixturevalue("qwen3")[source] if source.startswith("qwen3") else MODELS / source
    monkeypatch.setenv("BITPACK_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / codec
    monkeypatch.setattr(receipt, "sha256_file", lambda p: pytest.fail(f"{p} hashed again")
                        if p.name == "model.safetensors" and Path(p).is_relative_to(out) else sha256(p))
    report = convert(path, codec, ConvertOptions(output=out))
    files = {f["path"]: f["sha256"] for f in json.loads(Path(report["receipt"]).read_text())["output"]["files"]}
    assert files["model.safetensors"] == sha256(out / "model.safetensors")
    assert {p.name for p in out.iterdir()} == set(files) and all(files[n] == sha256(out / n) for n in files)
