"""The reference CPU executor (NumPy): a forward pass per architecture, weights pulled lazily.

``executor(model, numerics)`` picks the implementation for a numerics mode: ``hf`` emulates
transformers' rounding points (hf.py); ``exact``, ``llamacpp`` and ``bitnetcpp`` are tables
of rounding rules for one forward pass (forward.py, numerics.py).
"""

from __future__ import annotations

from ..models.model import Model
from .forward import Capture, Executor, kept_codes_bytes
from .hf import HFExecutor
from .numerics import MODES

NUMERICS = (*MODES, "hf")


def executor(model: Model, numerics: str = "exact", capture: Capture | None = None,
             keep_codes: bool | str = False) -> Executor:
    """The executor for ``numerics`` (one of NUMERICS); ``keep_codes`` as for Executor."""
    if numerics == "hf":
        return HFExecutor(model, capture, keep_codes)
    return Executor(model, numerics, capture, keep_codes)


__all__ = ["NUMERICS", "Capture", "Executor", "executor", "kept_codes_bytes"]
