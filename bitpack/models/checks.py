"""Source checks run before a conversion writes anything (spec/checkpoints.md §10).

The current revisions of the microsoft/bitnet-b1.58-2B-4T repositories carry MLP
projections that are entirely zero (microsoft/BitNet#608); a converted file then runs and
produces garbage. Every ternary projection is therefore checked for:

- all codes zero (packed: every byte 0x55; masters: every |W| below half the clamped
  absmean, which covers both exact zeros and the denormal garbage of §10);
- a scale that is not a positive finite number (per-block TQ scales: any non-finite).

Master weights need no second pass: their absmean scale is computed once (and reused by the
target's plan), and a master whose mean|W| is above the 1e-5 clamp always has codes at its
largest |W|. Layouts with a zero byte (hf_packed, i2_s, int8) are judged from their bytes,
which differ from the pattern within the first few for any real weight; the rest are decoded
once, on all cores.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import FLOAT_STORAGE
from ..parallel import ordered
from .model import Entry, Model
from .ternarize import ABSMEAN_FLOOR

MASTER_DTYPES = tuple(FLOAT_STORAGE)  # master weights are stored floats
MARGIN = 2.0  # scales this close above the clamp are decoded to be sure
REVISION_HINT = ("the current revisions of microsoft/bitnet-b1.58-2B-4T have all-zero MLP projections "
                 "(microsoft/BitNet#608): convert an earlier revision (--revision REV, or org/name@REV)")


def degenerate_tensors(model: Model) -> list[tuple[str, str]]:
    """(canonical name, what is wrong) for every ternary projection that cannot be a real weight."""
    if model.precision != "ternary":  # a full-precision model or a BitStack: nothing ternary to check
        return []
    found = []
    for entry, problem in ordered(model.ternary, _problem):
        if problem:
            found.append((entry.name, problem))
    return found


def _problem(e: Entry) -> str | None:
    try:
        return _check(e)
    finally:  # keep resident memory to the tensors in hand (the scale pass maps every master)
        if e.release:
            e.release()


def _check(e: Entry) -> str | None:
    scale = e.scale_only()
    values = np.asarray(scale, dtype=np.float32)
    if not np.isfinite(values).all():
        return "its scale is not finite"
    if values.ndim == 0 and values <= 0:
        return f"its scale {float(values)!r} is not positive"
    if e.stored in MASTER_DTYPES and values.ndim == 0 and values > ABSMEAN_FLOOR * MARGIN:
        return None
    zero = e.all_zero() if e.all_zero is not None else None
    if zero is None:  # no byte pattern for this layout: decode
        zero = not e.load().codes.any()
    return "every weight is zero" if zero else None


def describe(problems: list[tuple[str, str]], limit: int = 8) -> str:
    shown = "; ".join(f"{name}: {why}" for name, why in problems[:limit])
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} degenerate ternary projection{'s' if len(problems) > 1 else ''} ({shown}{more})"
