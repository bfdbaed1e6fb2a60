"""A short, deterministic run of the models fuzz harness (tests/fuzz_models.py): fixed seeds, a
few seconds. The long run is fuzz/run_models.py."""

from __future__ import annotations

import pytest

from fuzz_models import campaign


@pytest.mark.parametrize("target, cases", [("hf", 200), ("gguf", 200)])
def test_fuzz_short_run_has_no_crash(target, cases):
    result = campaign(target, cases, seed=1)
    assert result["crash"] == 0, result["crashes"][:3]
    assert result["ok"] + result["refused"] == cases
