"""The command line as a user meets it: exit codes, stdout/stderr, output for people and pipes.

Commands run in-process through cli.main() (cli_runner); the few things only a real process
shows (the console script, ``python -m bitpack``) start one.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack

from bitpack.codecs import codec_class, get_codec, list_codecs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tensor_256x768.npz"


def test_formats_json_lists_every_codec():
    done = bitpack("formats", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == list_codecs()
    by_name = {r["name"]: r for r in rows}
    assert by_name["tq2_0"]["bits_per_weight_example"]["value"] == 2.0625
    assert by_name["tq1_0"]["container"] == "gguf"
    assert by_name["int8"]["aliases"] == ["i2_naive"]
    # a stack is a directory by default and one GGUF file with -o x.gguf; both are listed
    assert by_name["bitstack"]["container"] == "safetensors"
    assert by_name["bitstack"]["containers"] == ["safetensors", "gguf"]
    assert by_name["tq1_0"]["containers"] == ["gguf"]
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
        # group- and row-scale codecs decode one scale per group or row, each equal to the fixture's
        np.testing.assert_array_equal(back["scale"], np.broadcast_to(scale, back["scale"].shape))


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
        (("encode", FIXTURE, "--to", "tl2", "--params", "BK"), "--params expects KEY=VALUE"),
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


# -- usage errors: one line, the usage, exit 2, whatever click typer bundles ------------------------


@pytest.mark.parametrize("args, error, usage", [
    (("encode", FIXTURE), "Missing option '--to'.", "bitpack encode [OPTIONS] {SRC}"),
    (("convert",), "Missing argument 'SRC'.", "bitpack convert [OPTIONS] {SRC}"),
    (("formats", "--no-such-flag"), "No such option: --no-such-flag", "bitpack formats [OPTIONS]"),
    (("convrt", "x"), "No such command 'convrt'. Did you mean 'convert'?", "bitpack [OPTIONS] COMMAND [ARGS]..."),
    (("run", "m", "--top-k", "abc"), "Invalid value for '--top-k': ", "bitpack run [OPTIONS] {MODEL}"),
    (("convert", "x", "--to", "i2_s", "--scale-convention", "up"),
     "Invalid value for '--scale-convention': ", "bitpack convert [OPTIONS] {SRC}"),
])
def test_usage_errors_are_one_line_then_the_usage_and_exit_2(args, error, usage):
    done = bitpack(*args)
    assert done.returncode == 2 and done.stdout == ""
    first, *rest = done.stderr.splitlines()
    assert first.startswith("bitpack: error: " + error)
    command = usage.split(" [OPTIONS]")[0]
    assert rest == [f"Usage: {usage}", f"Try '{command} --help' for help."]


def test_a_bad_choice_names_the_choices():
    done = bitpack("convert", "x", "--to", "i2_s", "--scale-convention", "up")
    assert "'up' is not one of 'multiply', 'divide'" in done.stderr.splitlines()[0]


def test_bare_bitpack_prints_the_help_on_stderr_and_exits_2():
    done = bitpack()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("Usage: bitpack [OPTIONS] COMMAND [ARGS]...\n")
    for command in ("formats", "encode", "decode", "convert", "inspect", "verify", "run"):
        assert f"\n  {command} " in done.stderr


def test_help_exits_0_on_stdout():
    done = bitpack("convert", "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("Usage: bitpack convert [OPTIONS] {SRC}\n")


# -- output for people and for pipes --------------------------------------------------------------


def _commands():
    import typer

    from bitpack.cli import app

    return typer.main.get_command(app).commands


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_at_80_columns_shows_every_flag_whole(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    done = bitpack(command, "--help")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert "…" not in done.stdout and "<bool>" not in done.stdout
    words = done.stdout.replace(",", " ").split()
    for param in _commands()[command].params:
        for flag in param.opts + param.secondary_opts:
            if flag.startswith("-"):
                assert flag in words, flag


def test_piped_convert_lines_are_whole_at_80_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / ("a-long-output-name-that-does-not-fit-in-eighty-columns-" * 2 + ".gguf")
    done = bitpack("convert", MODELS / "b158-bf16", "--to", "tq2_0", "-o", out, "--allow-scale-rounding")
    assert done.returncode == 0, done.stderr
    wrote, receipt = done.stdout.splitlines()
    assert re.fullmatch(rf"wrote {re.escape(str(out))}: tq2_0, \d+ tensors, [\d,]+ bytes in [\d.]+ s", wrote)
    assert receipt == f"receipt: {out}.receipt.json"
    report = json.loads(bitpack("convert", MODELS / "b158-bf16", "--to", "tq2_0", "-o", tmp_path / "j.gguf",
                                "--allow-scale-rounding", "--json").stdout)
    assert report["rounded"]
    assert done.stderr.splitlines() == [f"rounded: {line}" for line in report["rounded"]] + [
        f"warning: {line}" for line in report["warnings"]]  # one line each, none split
    # a long warning (transformers has not verified the SiLU graph) stays one line too
    warned = bitpack("convert", MODELS / "bitnet-f32-sharded", "--to", "hf_packed", "-o", tmp_path / "hf")
    assert warned.returncode == 0, warned.stderr
    lines = [line for line in warned.stderr.splitlines() if line.startswith("warning: ")]
    assert any(len(line) > 80 and line.endswith("before relying on it") for line in lines), warned.stderr


def test_piped_inspect_is_one_aligned_line_per_row(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    done = bitpack("inspect", MODELS / "b158-packed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    hparams = next(line for line in lines if line.startswith("hparams "))
    assert hparams.endswith(", bos_token_id=298, eos_token_id=299")
    assert re.fullmatch(r"name +shape +codec / dtype +bits/w +scale +notes", lines[lines.index("tensors") + 1])
    assert re.fullmatch(r"blk\.0\.attn_norm\.weight +256 +BF16 +16", next(x for x in lines if x.startswith("blk.0.attn_norm")))
    assert re.fullmatch(r"blk\.1\.ffn_down\.weight +256x512 +hf_packed +2 +\S+", next(x for x in lines if x.startswith("blk.1.ffn_down")))
    header = lines[lines.index("tensors") + 1]
    codecs = [line for line in lines if line.startswith("blk.")]
    assert {line[header.index("codec / dtype"):].split()[0] for line in codecs} == {"BF16", "hf_packed"}  # aligned


def test_piped_encode_shows_the_whole_sha256(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("COLUMNS", "80")
    out = tmp_path / "w.tq2_0"
    done = bitpack("encode", FIXTURE, "--to", "tq2_0", "-o", out)
    assert done.returncode == 0, done.stderr
    assert f"sha256           {hashlib.sha256(out.read_bytes()).hexdigest()}" in done.stdout.splitlines()


def test_piped_formats_is_one_line_per_codec(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    done = bitpack("formats")
    lines = done.stdout.splitlines()
    assert lines[0] == "bitpack codecs" and lines[1].startswith("codec ")
    assert [line.split()[0] for line in lines[2:]] == list_codecs()


@pytest.mark.parametrize("columns, drawn", [("200", True), ("60", False)])
def test_a_terminal_gets_a_table_only_when_every_cell_fits(monkeypatch, columns, drawn):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the captured stream as a terminal
    monkeypatch.setenv("COLUMNS", columns)
    done = bitpack("inspect", MODELS / "b158-packed")
    assert done.returncode == 0, done.stderr
    assert ("┏" in done.stdout) == drawn
    if not drawn:  # the narrow terminal wraps long lines by itself; bitpack does not split them
        assert any(re.fullmatch(r"blk\.0\.attn_norm\.weight +256 +BF16 +16", line) for line in done.stdout.splitlines())


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path):
    from bitpack.pipelines import convert as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "convert", interrupted)
    done = bitpack("convert", MODELS / "b158-packed", "--to", "i2_s", "-o", tmp_path / "m.gguf")
    assert done.returncode == 130 and done.stderr == "bitpack: interrupted\n" and done.stdout == ""


# -- what only a real process shows ---------------------------------------------------------------


def _process(*argv, **kwargs):
    return subprocess.run([*map(str, argv)], capture_output=True, text=True, timeout=120, **kwargs)


def test_python_dash_m_bitpack():
    done = _process(sys.executable, "-m", "bitpack", "--version")
    assert done.returncode == 0 and done.stdout.startswith("bitpack ")
    bare = _process(sys.executable, "-m", "bitpack")
    assert bare.returncode == 2 and bare.stderr.startswith("Usage: bitpack [OPTIONS] COMMAND")


def test_the_console_script_exit_code_and_one_line_error():
    script = Path(sys.executable).parent / "bitpack"
    if not script.is_file():
        pytest.skip("no bitpack console script next to this Python")
    done = _process(script, "encode", FIXTURE)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0] == "bitpack: error: Missing option '--to'."


# -- progress that tells the truth ----------------------------------------------------------------


class _Recorder:
    """A progress callback with the optional hooks convert() calls (as the command line's bar has)."""

    def __init__(self):
        self.events = []

    def __call__(self, name, nbytes):
        self.events.append(("tensor", name, nbytes))

    def plan(self, tensors, nbytes):
        self.events.append(("plan", tensors, nbytes))

    def stage(self, name):
        self.events.append(("stage", name))


@pytest.mark.parametrize("to", ["i2_s", "hf_packed"])  # the GGUF and the safetensors writer
def test_convert_announces_its_totals_before_writing_and_the_verify_stage(tmp_path, to):
    from bitpack.pipelines.convert import ConvertOptions, convert

    seen = _Recorder()
    convert(MODELS / "b158-packed", to, ConvertOptions(output=tmp_path / "out", verify=True), progress=seen)
    (first, tensors, nbytes), *written, last = seen.events
    assert first == "plan" and last == ("stage", "verifying")
    assert {kind for kind, *_ in written} == {"tensor"}
    assert tensors == len(written) and nbytes == sum(n for *_, n in written)


def test_a_terminal_sees_totals_and_the_verify_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "160")
    done = bitpack("convert", MODELS / "b158-packed", "--to", "i2_s", "-o", tmp_path / "m.gguf", "--verify")
    assert done.returncode == 0, done.stderr
    assert "24/24 tensors" in done.stderr and "100%" in done.stderr and "verifying" in done.stderr
    assert "/? bytes" not in done.stderr  # never a byte count without its total
    wrote = done.stdout.splitlines()[0]
    converting, verifying = map(float, re.fullmatch(r"wrote .*: i2_s, 24 tensors, [\d,]+ bytes in ([\d.]+) s, "
                                                    r"verified in ([\d.]+) s", wrote).groups())
    report = json.loads(Path(f"{tmp_path / 'm.gguf'}.receipt.json").read_text())
    assert verifying == report["verify"]["seconds"] and converting > 0
