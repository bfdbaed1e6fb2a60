"""Shared test configuration for the codec tests.

* Hypothesis runs a bounded number of small examples so the whole suite stays fast on a
  2-core machine, and it keeps no example database inside the work tree. Under CI
  (``CI`` set) it is derandomized so a run is reproducible; on a developer machine it
  explores new examples every run. HYPOTHESIS_PROFILE=thorough runs many more.
* The conformance suite (codec_suite.py) is parametrized per codec by the hook below.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Receipts remember input digests in a user cache; tests keep theirs out of the home folder.
os.environ["BITPACK_CACHE_DIR"] = tempfile.mkdtemp(prefix="bitpack-test-cache-")

settings.register_profile(
    "bitpack",
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    # The conformance suite runs one @given method from many codec subclasses on purpose.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.differing_executors],
)
# HYPOTHESIS_PROFILE=thorough explores far more examples (minutes, not seconds).
settings.register_profile("thorough", parent=settings.get_profile("bitpack"), max_examples=600)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bitpack"))


def pytest_generate_tests(metafunc):
    """Parametrize the conformance suite from the attributes of each codec's subclass.

    A suite test that takes ``example_shape`` runs once per shape in the subclass's
    ``example_shapes``; one that takes ``refused_case`` runs once per (shape, rule) in
    ``refused_cases()``. Each codec therefore plugs in only its own facts.
    """
    cls = metafunc.cls
    if cls is None:
        return
    if "example_shape" in metafunc.fixturenames:
        shapes = list(cls.example_shapes)
        metafunc.parametrize("example_shape", shapes, ids=[f"{m}x{k}" for m, k in shapes])
    if "refused_case" in metafunc.fixturenames:
        cases = list(cls.refused_cases())
        metafunc.parametrize("refused_case", cases, ids=[repr(shape) for shape, _ in cases])
    if "golden_file" in metafunc.fixturenames:  # codec_suite.Golden2026Checks
        metafunc.parametrize("golden_file", cls.golden_files())


# -- the tiny Ternary-Bonsai-shaped qwen3 models (fixtures/make_qwen3_fixtures.py) -----------
# Generated once per session into a temporary folder (17 MB: not committed).
GENERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "make_qwen3_fixtures.py"


def make_qwen3(out_dir: Path) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("make_qwen3_fixtures", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(out_dir)


@pytest.fixture(scope="session")
def qwen3(tmp_path_factory) -> dict[str, Path]:
    """{"qwen3-tied-unpacked": dir, "qwen3-tied-F16": .gguf, "qwen3-tied-Q2_0-legacy": .gguf, ...
    (tied, untied, yarn), "expected": .npz}."""
    return make_qwen3(tmp_path_factory.mktemp("qwen3"))


@pytest.fixture(scope="session")
def expected(qwen3) -> dict:
    with np.load(qwen3["expected"]) as z:
        return {k: z[k] for k in z.files}
