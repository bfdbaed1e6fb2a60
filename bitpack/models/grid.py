"""Float entries of a model read as ternary when their values lie on a ternary grid
(codecs/_grid.py says when they do): Ternary Bonsai's F16 GGUF and "-unpacked" checkpoint."""

from __future__ import annotations

import numpy as np

from ..codecs._grid import OffGrid, on_grid
from ..parallel import ordered
from .arch import Architecture, Kind
from .floats import STORAGE
from .model import Float, Ternary


def read_on_grid(entries: list, where: str) -> str | None:
    """Turn float entries (projections, an embedding, a head) whose values all lie on a ternary
    grid into entries that load as Ternary, in place, each checked once up front on all cores.
    Returns None, or -- leaving every entry float -- the first tensor and group that is off
    the grid (the model is then not a ternary model)."""
    def check(e) -> str | None:
        try:
            on_grid(_values(e.load()))
            return None
        except OffGrid as err:
            return f"{e.source_name or e.name} is not ternary: {err}"
        finally:
            if e.release:
                e.release()

    reasons = [why for _, why in ordered(entries, check) if why]
    if reasons:
        return f"{where}: {reasons[0]}"
    for e in entries:
        float_load = e.load
        e.load = lambda fl=float_load: Ternary(*on_grid(_values(fl())))
        e.load_rows = lambda lo, hi, fl=float_load: Ternary(*on_grid(_values(fl(), lo, hi)))
        e.ternary = e.kind is not Kind.TERNARY
    return None


def _values(value, lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """A Float's rows lo:hi as an array that widens to float32 exactly (BF16 bits widened here)."""
    raw = value.raw if lo is None else value.raw[lo:hi]
    return Float(raw, value.stored).values if value.stored == "BF16" else raw


def read_grids(entries: list, arch: Architecture, where: str) -> str | None:
    """A weight-only graph's float projections (Bonsai's F16 GGUF, its -unpacked checkpoint)
    are ternary when every one lies on a ternary grid; its float embedding and head each on
    their own. Returns why the projections are not ternary, if they are not."""
    if not arch.weight_only:
        return None
    floats = [e for e in entries if e.kind is Kind.TERNARY and e.stored in STORAGE]
    reason = read_on_grid(floats, where) if floats else None
    if reason is not None:
        return reason  # a float model: every tensor stays float (BitStack, float targets)
    for e in entries:
        if e.kind in (Kind.EMBEDDING, Kind.HEAD) and e.stored in STORAGE:
            read_on_grid([e], where)  # off the grid: a float table, as in BitNet models
    return None
