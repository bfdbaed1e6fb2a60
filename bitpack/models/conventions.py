"""What a stored ``weight_scale`` means: the one table of transformers' BitNet linear classes.

transformers' BitNet integration has two packed linear classes (spec/checkpoints.md §3.2):
``autobitlinear`` stores s = mean|W| and multiplies by it; ``bitlinear`` stores 1/s and
divides by it. A config.json without ``linear_class`` means ``bitlinear`` (transformers'
default). Everything that reads, writes or runs a packed checkpoint converts through here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BitpackError


@dataclass(frozen=True)
class LinearClass:
    name: str
    convention: str  # "multiply" or "divide": what the runtime does with the stored value

    def scale(self, stored: np.float32) -> np.float32:
        """The invariant's scale s from a stored weight_scale (float32 arithmetic, as the runtime)."""
        stored = np.float32(stored)
        return np.float32(np.float32(1) / stored) if self.convention == "divide" else stored

    def stored(self, scale: np.float32) -> np.float32:
        """The weight_scale to store for scale s (the inverse of :meth:`scale` where it is exact)."""
        return self.scale(scale)  # 1/x is its own inverse; identity likewise


LINEAR_CLASSES = {c.name: c for c in (LinearClass("autobitlinear", "multiply"), LinearClass("bitlinear", "divide"))}
DEFAULT = "bitlinear"  # transformers' BitNetQuantConfig default
OWN = LINEAR_CLASSES["autobitlinear"]  # bitpack's own layouts (int8, i2_packed) store s itself
CONVENTIONS = {c.convention: c.name for c in LINEAR_CLASSES.values()}  # --scale-convention -> class


def resolve_linear_class(name: str | None, where: str = "linear_class") -> LinearClass:
    """The class ``name`` (None: transformers' default), or a one-line error naming the choices."""
    key = DEFAULT if name is None else name
    if key not in LINEAR_CLASSES:
        raise BitpackError(f"{where} {name!r} is unknown (expected {' or '.join(LINEAR_CLASSES)})")
    return LINEAR_CLASSES[key]
