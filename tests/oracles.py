"""Import an external oracle: skipped on a developer machine without it, required in CI.

CI installs every oracle (.ci/run), so there a missing one is a failure, never a skip.
"""

import importlib
import os

import pytest


def require(module: str):
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)
