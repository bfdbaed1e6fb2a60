"""Shared test configuration for the codec suite.

* Hypothesis runs a bounded number of small examples so the whole suite stays fast on a
  2-core machine, and it keeps no example database inside the work tree. Under CI
  (``CI`` set) it is derandomized so a run is reproducible; on a developer machine it
  explores new examples every run.
* ``REPO_ROOT`` / ``SHARED_DIR`` locate the repository and the project's ``shared/``
  folder, which CI checks out beside the repository (``/path/main`` and ``/path/shared``).
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
FIXTURES_DIR = REPO_ROOT / "fixtures" / "codec_golden"

settings.register_profile(
    "bitpack",
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bitpack"))
