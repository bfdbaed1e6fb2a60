"""The command line as a user meets it: real subprocesses, exit codes, stdout/stderr."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitpack.codecs import codec_class, get_codec, list_codecs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tensor_256x768.npz"


def bitpack(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bitpack.cli", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )


def test_formats_json_lists_every_codec():
    done = bitpack("formats", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == list_codecs()
    by_name = {r["name"]: r for r in rows}
    assert by_name["tq2_0"]["bits_per_weight_example"]["value"] == 2.0625
    assert by_name["tq1_0"]["container"] == "gguf"
    assert by_name["int8"]["aliases"] == ["i2_naive"]
    assert all(Path(__file__).resolve().parents[1].joinpath(r["spec"]).is_file() for r in rows)


def test_formats_table_for_people():
    done = bitpack("formats")
    assert done.returncode == 0
    for name in list_codecs():
        assert name in done.stdout


# Codecs that cannot hold the ternary fixture at all (each says why when asked to).
CANNOT_HOLD_FIXTURE = {"q1_0": "binary: the fixture has zeros inside nonzero 128-groups"}


@pytest.mark.parametrize(
    "codec", [c for c in list_codecs() if not codec_class(c).lossy and c not in CANNOT_HOLD_FIXTURE]
)
def test_encode_then_decode_round_trips_the_fixture(tmp_path, codec):
    out = tmp_path / f"w.{codec}"
    done = bitpack("encode", FIXTURE, "--to", codec, "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    with np.load(FIXTURE) as npz:
        codes, scale = npz["codes"], npz["scale"]
    expected = get_codec(codec).encode(codes, scale)
    assert out.read_bytes() == expected.tobytes()
    assert report["nbytes"] == expected.nbytes
    decoded = bitpack("decode", out, "-o", tmp_path / "back.npz", "--json")
    assert decoded.returncode == 0, decoded.stderr
    with np.load(tmp_path / "back.npz") as back:
        np.testing.assert_array_equal(back["codes"], codes)
        # group-scale codecs give one scale per group (formats-2026 §7.2), all equal to the fixture's
        assert (back["scale"] == scale).all() if back["scale"].ndim else back["scale"] == scale


def test_tile_parameters_are_honoured_and_recorded(tmp_path):
    out = tmp_path / "w.tl2"
    done = bitpack("encode", FIXTURE, "--to", "tl2", "--params", "BM=128,BK=192,bm=32", "-o", out)
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((tmp_path / "w.tl2.json").read_text())
    assert sidecar["codec"] == {"id": "tl2", "BM": 128, "BK": 192, "bm": 32}


@pytest.mark.parametrize(
    "args, message",
    [
        (("encode", "missing.npz", "--to", "tl2"), "does not exist"),
        (("encode", FIXTURE, "--to", "nope"), "unknown codec 'nope'"),
        (("encode", FIXTURE, "--to", "tq2_0", "--params", "BM=3"), "tq2_0 has no parameter BM"),
        (("encode", FIXTURE, "--to", "tl2", "--params", "BK=100"), "BK = 100 is not a multiple of 24"),
        (("encode", FIXTURE, "--to", "tl2", "--params", "BK"), "--params expects KEY=INT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    done = bitpack(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_shape_refusal_names_the_rule(tmp_path):
    src = tmp_path / "odd.npz"
    np.savez(src, codes=np.zeros((4, 8640), np.int8), scale=np.float32(1))
    done = bitpack("encode", src, "--to", "tq2_0", "-o", tmp_path / "x")
    assert done.returncode == 2
    assert "K = 8640 is not a multiple of 256" in done.stderr
    assert not (tmp_path / "x").exists()


def test_refuses_to_clobber_and_never_writes_over_the_input(tmp_path):
    out = tmp_path / "w.i2_s"
    assert bitpack("encode", FIXTURE, "--to", "i2_s", "-o", out).returncode == 0
    again = bitpack("encode", FIXTURE, "--to", "i2_s", "-o", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert bitpack("encode", FIXTURE, "--to", "i2_s", "-o", out, "--overwrite").returncode == 0
    copy = tmp_path / "in.npz"
    copy.write_bytes(FIXTURE.read_bytes())
    onto_input = bitpack("encode", copy, "--to", "i2_s", "-o", copy, "--overwrite")
    assert onto_input.returncode == 2 and "over the input" in onto_input.stderr
    assert copy.read_bytes() == FIXTURE.read_bytes()


def test_corrupt_bytes_are_refused_on_decode(tmp_path):
    out = tmp_path / "w.tq2_0"
    assert bitpack("encode", FIXTURE, "--to", "tq2_0", "-o", out).returncode == 0
    data = bytearray(out.read_bytes())
    data[0] = 0xFF  # four codes 3
    out.write_bytes(bytes(data))
    done = bitpack("decode", out, "-o", tmp_path / "back.npz")
    assert done.returncode == 2 and "code 3" in done.stderr
    assert not (tmp_path / "back.npz").exists()
    out.write_bytes(bytes(data[:-1]))
    short = bitpack("decode", out, "-o", tmp_path / "back.npz")
    assert short.returncode == 2 and "must be" in short.stderr


def test_not_an_npz(tmp_path):
    src = tmp_path / "junk.npz"
    src.write_bytes(b"GGUF not a zip")
    done = bitpack("encode", src, "--to", "i2_s")
    assert done.returncode == 2 and "not a .npz" in done.stderr


def test_version():
    done = bitpack("--version")
    assert done.returncode == 0 and done.stdout.startswith("bitpack ")


MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"


def test_convert_json_report_and_exit_codes(tmp_path):
    out = tmp_path / "m.gguf"
    done = bitpack("convert", MODELS / "b158-packed", "--to", "i2_s", "-o", out, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for key in ("output", "format", "tensors", "bytes_written", "seconds"):
        assert key in report
    assert report["format"] == "i2_s" and out.stat().st_size == report["bytes_written"]
    assert done.stderr == ""  # no progress bar when not a terminal, warnings only in the report
    again = bitpack("convert", MODELS / "b158-packed", "--to", "i2_s", "-o", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_convert_refusal_is_one_line(tmp_path):
    done = bitpack("convert", MODELS / "b158-bf16", "--to", "tq2_0", "-o", tmp_path / "m.gguf")
    assert done.returncode == 2
    assert "--allow-scale-rounding" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    ok = bitpack("convert", MODELS / "b158-bf16", "--to", "tq2_0", "-o", tmp_path / "m.gguf", "--allow-scale-rounding")
    assert ok.returncode == 0, ok.stderr
    assert "rounded: blk.0.attn_k.weight" in ok.stderr
