"""Are two tensors the same weights? Ternary ones by codes and their coarsest exact scale
(any two layouts of the same weights agree: formats-2026.md §7.2), float ones by value, a
ternary one and a float one by value; cheaply by bytes where one layout transcodes to the
other by a shortcut; a ternary table a slice of rows at a time. Used by ``verify`` and by the
tensor-by-tensor comparison of GGUF files of any architecture."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..codecs import get_codec
from ..codecs._scales import coarsest
from ..errors import BitpackError
from ..parallel import row_spans
from .floats import as_float
from .model import Entry, Float, Ternary

CHUNK = 1 << 20  # float values widened at a time

TABLE_ROWS = 16384  # rows of a ternary embedding or head compared at a time


def compare_entries(a: Entry, b: Entry) -> dict[str, Any] | None:
    """Two entries' tensors; a ternary table whose rows decode alone a slice at a time, so the
    151,936-row tables of a Bonsai model are never decoded whole. Equal weights have equal
    coarsest scales in every slice, so slicing changes no verdict."""
    if _same_bytes(a, b):
        return None
    if a.load_rows is None or b.load_rows is None or a.shape != b.shape:
        return compare_values(a.load(), b.load())
    wrong, scales = 0, None
    for lo in range(0, a.shape[0], TABLE_ROWS):
        hi = min(a.shape[0], lo + TABLE_ROWS)
        diff = compare_values(a.load_rows(lo, hi), b.load_rows(lo, hi))
        if diff and diff.get("reason", "").startswith("one is"):
            return diff
        wrong += (diff or {}).get("codes_differing", 0)
        scales = scales or (diff or {}).get("scales")
    return _difference(wrong, a.shape[0] * a.shape[1], scales)


def _same_bytes(a: Entry, b: Entry) -> bool:
    """Whether b's stored bytes are a's weights written in b's layout, where that is cheaper to
    tell than decoding both: the same codec, or a pair with a byte shortcut (Codec.transcode;
    Bonsai's legacy g128 -> q2_0 is a byte shuffle). A block of rows at a time where rows are
    byte ranges of their own. Equal bytes are equal weights (every layout has one normal form);
    False only means "not shown equal here": the tensors are then decoded and compared."""
    if a.raw is None or b.raw is None or a.shape != b.shape or len(a.shape) != 2:
        return False
    src, dst = get_codec(a.stored, **(a.source_params or {})), get_codec(b.stored, **(b.source_params or {}))
    if src != dst and not dst.transcodes_from(src):
        return False
    m, k = a.shape
    rows_a, rows_b = src.row_bytes(k), dst.row_bytes(k)
    spans = (row_spans(m, k) if rows_a and rows_b else None) or [(0, m)]
    raw_a, raw_b = a.raw(), b.raw()
    try:
        for lo, hi in spans:
            part_a = raw_a[lo * rows_a : hi * rows_a] if len(spans) > 1 else raw_a
            part_b = raw_b[lo * rows_b : hi * rows_b] if len(spans) > 1 else raw_b
            same = part_a if src == dst else dst.transcode(src, part_a, (hi - lo, k))
            if not np.array_equal(np.asarray(same).view(np.uint8).reshape(-1), part_b.view(np.uint8).reshape(-1)):
                return False
    except BitpackError:  # corrupt or not holdable: the decoding comparison says what and where
        return False
    return True


def _difference(wrong: int, size: int, scales: list[float] | None) -> dict[str, Any] | None:
    """The report of a ternary tensor's differences: codes that differ, and its first scales
    that differ."""
    if not wrong and scales is None:
        return None
    out: dict[str, Any] = {"reason": []}
    if wrong:
        out["reason"].append(f"{wrong} of {size} codes differ")
        out["codes_differing"] = wrong
    if scales is not None:
        out["reason"].append(f"scale {scales[0]!r} vs {scales[1]!r}")
        out["scales"] = scales
    out["reason"] = "; ".join(out["reason"])
    return out


def compare_values(a: Ternary | Float, b: Ternary | Float) -> dict[str, Any] | None:
    if isinstance(a, Ternary) != isinstance(b, Ternary):
        if a.values.shape != b.values.shape:
            return {"reason": "one is ternary, the other is not"}
        a, b = as_float(a), as_float(b)  # e.g. a ternary table kept as its float values: the same weights?
    if isinstance(a, Ternary):
        if a.codes.shape != b.codes.shape:
            return {"reason": f"shape {list(a.codes.shape)} vs {list(b.codes.shape)}"}
        wrong = int(np.count_nonzero(a.codes != b.codes))
        # one scale per tensor, row or group, whichever each layout stores: the same weights
        # have the same coarsest exact scale (formats-2026.md §7.2)
        sa, sb = coarsest(a.scale, a.codes), coarsest(b.scale, b.codes)
        same_scale = np.ndim(sa) == np.ndim(sb) and np.array_equal(np.asarray(sa, np.float32),
                                                                    np.asarray(sb, np.float32))
        scales = None if same_scale else [float(np.asarray(s).reshape(-1)[0]) for s in (a.scale, b.scale)]
        return _difference(wrong, a.codes.size, scales)
    if a.raw.shape != b.raw.shape:
        return {"reason": f"shape {list(a.raw.shape)} vs {list(b.raw.shape)}"}
    if a.stored == b.stored:  # same storage: compare the stored bits, nothing widened
        wrong = int(np.count_nonzero(a.raw != b.raw))
    else:  # e.g. BF16 source vs F16 GGUF: compare values, a slice at a time
        flat_a, flat_b = a.raw.reshape(-1), b.raw.reshape(-1)
        wrong = sum(int(np.count_nonzero(Float(flat_a[i : i + CHUNK], a.stored).values
                                         != Float(flat_b[i : i + CHUNK], b.stored).values))
                    for i in range(0, flat_a.size, CHUNK))
    return {"reason": f"{wrong} of {a.raw.size} values differ"} if wrong else None
