"""A short, deterministic run of the models fuzz harness (tests/fuzz_models.py): fixed seeds, a
few seconds. The long run is fuzz/run.py."""

from __future__ import annotations

import shutil

import pytest
from cli_runner import bitpack
from fuzz_models import MODELS, campaign


@pytest.mark.parametrize("target, cases", [("hf", 200), ("gguf", 200)])
def test_fuzz_short_run_has_no_crash(target, cases):
    result = campaign(target, cases, seed=1)
    assert result["crash"] == 0, result["crashes"][:3]
    assert result["ok"] + result["refused"] == cases


REGRESSIONS = sorted((MODELS.parent / "fuzz").glob("hf-*"))


@pytest.mark.parametrize("case", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regression_inputs_are_refused(tmp_path, case):
    """Every crash a long run found, committed as the damaged files over a fixture (BASE names
    it), is now one BitpackError through the CLI, exit 2, no output."""
    src = tmp_path / "model"
    shutil.copytree(MODELS / (case / "BASE").read_text().strip(), src)
    for f in case.iterdir():
        if f.name not in ("BASE", "CRASH.txt"):
            shutil.copyfile(f, src / f.name)
    out = tmp_path / "out.gguf"
    done = bitpack("convert", src, "--to", "i2_s", "-o", out)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
