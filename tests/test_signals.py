"""What only a killed process shows: SIGTERM and Ctrl-C leave nothing under the output's name,
a temporary left by `kill -9` is removed by the next run, an interrupted `convert --verify`
keeps no unverified output, and the input is never written."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "fixtures" / "models" / "b158-packed"

# The command line with every tensor write slowed down, so a signal lands mid-conversion.
SLOW = (
    "import sys, time\n"
    "import bitpack.containers.gguf_write as w\n"
    "write = w.GGUFWriter.write_tensor\n"
    "def slow(self, *a):\n"
    "    print(WRITING, file=sys.stderr, flush=True)  # the test signals once it reads this\n"
    "    time.sleep(0.3)\n"
    "    return write(self, *a)\n"
    "w.GGUFWriter.write_tensor = slow\n"
    "from bitpack.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


WRITING = "bitpack-test: writing a tensor"


def start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", f"WRITING = {WRITING!r}\n" + SLOW, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_writing(proc: subprocess.Popen, folder: Path) -> None:
    """Block until the conversion is writing tensors (its temporary exists, more tensors follow)."""
    line = proc.stderr.readline()  # the first tensor write announces itself; each takes 0.3 s
    assert line.strip() == WRITING, line
    assert any(p.name.endswith(".part") for p in folder.iterdir())


def rest_of_stderr(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=60)
    return "".join(line for line in err.splitlines(keepends=True) if line.strip() != WRITING)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                   (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_conversion_leaves_nothing(tmp_path, sig, code, word):
    proc = start("convert", str(SOURCE), "--to", "i2_s", "-o", str(tmp_path / "out.gguf"))
    wait_for_writing(proc, tmp_path)
    proc.send_signal(sig)
    err = rest_of_stderr(proc)
    assert proc.returncode == code and err == f"bitpack: {word}\n"
    assert list(tmp_path.iterdir()) == []


def test_kill_9_then_a_rerun_removes_the_stale_temporary(tmp_path):
    proc = start("convert", str(SOURCE), "--to", "i2_s", "-o", str(tmp_path / "out.gguf"))
    wait_for_writing(proc, tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    [stale] = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # what kill -9 leaves
    from cli_runner import bitpack

    done = bitpack("convert", SOURCE, "--to", "i2_s", "-o", tmp_path / "out.gguf", "--no-receipt")
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["out.gguf"]


def test_a_running_writers_temporary_is_left_alone(tmp_path):
    mine = tmp_path / f".out.gguf.{os.getpid()}-0123abcd.part"  # a live pid: another run in progress
    mine.write_bytes(b"partial")
    from cli_runner import bitpack

    assert bitpack("convert", SOURCE, "--to", "i2_s", "-o", tmp_path / "out.gguf", "--no-receipt").returncode == 0
    assert mine.exists()


def test_an_interrupted_verify_keeps_no_unverified_output(tmp_path, monkeypatch):
    from cli_runner import bitpack

    from bitpack.pipelines import convert as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "verify", interrupted)
    done = bitpack("convert", SOURCE, "--to", "i2_s", "-o", tmp_path / "out.gguf", "--verify")
    assert done.returncode == 130 and list(tmp_path.iterdir()) == []


def test_the_input_is_never_written(tmp_path):
    def digest():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(SOURCE.iterdir())}

    before = digest()
    from cli_runner import bitpack

    for target in ("i2_s", "int8", "tq2_0"):
        bitpack("convert", SOURCE, "--to", target, "-o", tmp_path / target, "--verify", "--allow-scale-rounding")
    assert digest() == before


@pytest.mark.parametrize("target", ["i2_s", "int8"])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, target):
    import errno

    from cli_runner import bitpack

    from bitpack.containers.files import StagedFile

    opened = StagedFile.__init__

    def full_disk(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        real = self._fh

        class Full:
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):
                return getattr(real, name)

        self._fh = Full()

    monkeypatch.setattr(StagedFile, "__init__", full_disk)
    done = bitpack("convert", SOURCE, "--to", target, "-o", tmp_path / "out", "--no-receipt")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "No space left on device" in done.stderr and done.stderr.startswith("bitpack: error:")
    assert list(tmp_path.iterdir()) == []
