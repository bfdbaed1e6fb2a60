"""Scale granularity: one f32 scale per tensor, per row, or per group of g weights along a row.

The canonical ternary tensor (spec/formats-2026.md §7.1) is int8 codes (M, K) times a
scale that is

* ``tensor``: a 0-d float32;
* ``row``: float32 (M, 1);
* ``group`` of g: float32 (M, K // g), one value per g consecutive weights of a row.

A codec stores one granularity in one dtype (``Codec.scale_granularity``, ``group_size``,
``scale_dtype``). :func:`to_codec_scales` turns any scale a caller gives into exactly the
codec's own form, or refuses (formats-2026.md §7.3): refining (tensor -> row -> group) always
keeps the values; coarsening is exact only when, inside every target group, each source
group that holds a nonzero code has the same scale. A target group whose codes are all zero
gets +0, as every upstream quantizer writes (§7.2). The dtype check is exact representability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CodecError, ScaleError
from ._bits import rows_any

GRANULARITIES = ("tensor", "row", "group")
GROUP_WIDTHS = (256, 128, 64, 32)  # the group sizes formats use (formats-2026.md §7.1)


def group_width(granularity: str, group: int | None, k: int) -> int:
    """Weights per scale along a row: g, or K for per-row and per-tensor scales."""
    return group if granularity == "group" and group else k


def scale_shape(granularity: str, group: int | None, shape: tuple[int, int]) -> tuple[int, ...]:
    """The canonical array shape of a scale of this granularity for a weight of ``shape``."""
    m, k = shape
    if granularity == "tensor":
        return ()
    if granularity == "row":
        return (m, 1)
    return (m, k // group_width(granularity, group, k))


def as_scale_array(scale: Any, shape: tuple[int, int], codec: str) -> tuple[np.ndarray, int]:
    """A caller's scale as float32 (M, n) and its group width K // n; validates values.

    Accepts a scalar (or any size-1 array: per tensor), (M, 1) or (M,) per row, and
    (M, n) with n dividing K per group. Every value must be finite, >= 0 and exactly a
    float32 value (rounding is the caller's decision, never a codec's).
    """
    m, k = shape
    s = np.asarray(scale)
    if s.dtype == object or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)) \
            or s.dtype == np.bool_:
        raise CodecError(f"{codec} needs real scales; got {type(scale).__name__} of dtype {s.dtype}")
    if s.size == 1:
        s = s.reshape(1, 1)
        width = k
        s = np.broadcast_to(s, (m, 1))
    elif s.shape == (m,):
        s, width = s.reshape(m, 1), k
    elif s.ndim == 2 and s.shape[0] == m and s.shape[1] and k % s.shape[1] == 0:
        width = k // s.shape[1]
    else:
        raise CodecError(
            f"{codec} scales for shape {shape} must be a scalar, ({m}, 1) per row or "
            f"({m}, K/g) per group with g dividing K = {k}; got shape {s.shape}"
        )
    f32 = s.astype(np.float32)
    if not np.isfinite(f32).all():
        raise ScaleError(f"{codec} scales must be finite; {_first(~np.isfinite(f32), f32, width)}")
    if (f32 < 0).any():
        raise ScaleError(f"{codec} scales must be >= 0; {_first(f32 < 0, f32, width)}")
    if (f32.astype(np.float64) != s.astype(np.float64)).any():
        raise ScaleError(
            f"{codec} scales must be exactly float32 values "
            f"({_first(f32.astype(np.float64) != s.astype(np.float64), s, width)}); "
            "pass float32 values if rounding is intended"
        )
    return np.ascontiguousarray(f32), width


def nonzero_groups(codes: np.ndarray, width: int) -> np.ndarray:
    """bool (M, K // width): which groups hold a nonzero code. ``codes`` are uint8 c = t + 1
    (validated, zero = 1) or int8 t; both are given as (M, K)."""
    m, k = codes.shape
    zero = np.uint8(1) if codes.dtype == np.uint8 else np.int8(0)
    if width % 64 == 0 and codes.flags.c_contiguous and codes.itemsize == 1:
        # Fast path: compare eight codes at a time as uint64, then reduce the booleans of a
        # group eight at a time (_bits.rows_any).
        differs = codes.reshape(-1, width).view(np.uint64) != np.uint64(int(zero) * 0x0101010101010101)
        return rows_any(differs).reshape(m, k // width)
    return (codes.reshape(m, k // width, width) != zero).any(axis=2)


def to_codec_scales(
    scale: Any,
    codes: np.ndarray,
    granularity: str,
    group: int | None,
    dtype: str,
    codec: str,
) -> np.ndarray:
    """The codec's own scales (float32, ``scale_shape``; 0-d for per tensor) for ``scale``.

    Zero groups become +0; refuses a coarsening that loses information and any value the
    codec's ``dtype`` cannot hold exactly, naming the first offending row and group.
    """
    m, k = codes.shape
    given, width = as_scale_array(scale, (m, k), codec)
    target = group_width(granularity, group, k)
    nz_target = nonzero_groups(codes, target)
    if width % target == 0:  # refining (or equal): copy each source value into its subgroups
        out = np.repeat(given, width // target, axis=1)
    elif target % width == 0:  # coarsening: the nonzero source groups of a target group must agree
        per = target // width
        informative = nonzero_groups(codes, width).reshape(m, k // target, per)
        src = given.reshape(m, k // target, per)
        hi = np.where(informative, src, -np.inf).max(axis=2)
        lo = np.where(informative, src, np.inf).min(axis=2)
        bad = nz_target & (hi != lo)
        if bad.any():
            r, g = (int(i) for i in np.argwhere(bad)[0])
            values = sorted({float(v) for v, use in zip(src[r, g], informative[r, g], strict=True) if use})
            raise ScaleError(
                f"{codec} stores one scale per {unit(granularity, target)}, but row {r}"
                f"{f', group {g}' if granularity == 'group' else ''} holds weights with different scales "
                f"{', '.join(repr(v) for v in values[:4])}: a coarser scale cannot hold them exactly"
            )
        out = np.where(nz_target, hi, 0).astype(np.float32)
    else:
        raise ScaleError(
            f"{codec} groups of {target} weights straddle the given groups of {width}; "
            "no exact conversion exists"
        )
    out = np.where(nz_target, out, np.float32(0)).astype(np.float32)
    exact_in_dtype(out, dtype, codec, target)
    if granularity == "tensor":
        nz = out[nz_target[:, 0]] if out.size else out
        if nz.size and (nz != nz.reshape(-1)[0]).any():
            r = int(np.flatnonzero(nz_target[:, 0] & (out[:, 0] != nz.reshape(-1)[0]))[0])
            raise ScaleError(
                f"{codec} stores one scale per tensor, but row {r} has scale {float(out[r, 0])!r} "
                f"and an earlier row {float(nz.reshape(-1)[0])!r}"
            )
        return np.float32(nz.reshape(-1)[0] if nz.size else 0)
    return np.ascontiguousarray(out)


def exact_in_dtype(values: np.ndarray, dtype: str, codec: str, width: int | None = None) -> None:
    """Refuse any value that the storage ``dtype`` ('f32', 'f16', 'bf16') does not hold exactly."""
    f32 = np.asarray(values, dtype=np.float32)
    if dtype == "f32":
        return
    if dtype == "f16":
        with np.errstate(over="ignore"):
            back = f32.astype(np.float16).astype(np.float32)
    elif dtype == "bf16":
        back = (f32.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    else:
        raise CodecError(f"{codec}: unknown scale dtype {dtype!r}")
    lost = back != f32
    if lost.any():
        where = _first(lost, f32, width) if f32.ndim == 2 else f"value {float(f32.reshape(-1)[np.argmax(lost.reshape(-1))])!r}"
        raise ScaleError(
            f"{codec} stores {dtype} scales and cannot hold {where} exactly; "
            "convert to a target with f32 scales, or allow rounding explicitly"
        )


def unit(granularity: str, width: int | None) -> str:
    """What one scale covers, for messages: "tensor", "row" or "group of N"."""
    return {"group": f"group of {width}", "row": "row"}.get(granularity, "tensor")


def _first(mask: np.ndarray, values: np.ndarray, width: int | None) -> str:
    r, g = (int(i) for i in np.argwhere(mask)[0])
    unit = f"group {g} (of {width} weights)" if width else f"group {g}"
    return f"row {r}, {unit}: {float(values[r, g])!r}"


def coarsest(scale: Any, codes: np.ndarray) -> Any:
    """The same weights' scale at the coarsest granularity that holds it exactly: one value,
    one per row, or one per group of the widest standard width. Layouts that store the same
    tensor at different granularities then give the executor the same scale, so it sums in
    the same order and their logits are bit-identical."""
    if np.ndim(scale) == 0:
        return scale
    m, k = codes.shape
    given, width = as_scale_array(scale, (m, k), "scale")
    used = nonzero_groups(codes, width)  # the one pass over the codes; the candidates read only scales
    for granularity, group in (("tensor", None), ("row", None), *(("group", g) for g in GROUP_WIDTHS)):
        target = group_width(granularity, group, k)
        if (group is not None and k % group) or target % width:
            continue
        found = _uniform(given, used, target // width, granularity == "tensor")
        if found is not None:
            return found
    # no standard width at or above the given one holds it: refine to the widest that does
    for granularity, group in (("tensor", None), ("row", None), *(("group", g) for g in GROUP_WIDTHS)):
        if group is not None and k % group:
            continue
        try:
            return to_codec_scales(scale, codes, granularity, group, "f32", "scale")
        except ScaleError:
            continue
    return scale


def _uniform(given: np.ndarray, used: np.ndarray, per: int, whole: bool) -> Any:
    """The scale at ``per`` given groups per target group (``whole``: one for the tensor) when
    the used (nonzero) groups inside every target group agree, else None; unused target groups
    get +0, as to_codec_scales gives them."""
    m, n = given.shape
    src, informative = given.reshape(m, n // per, per), used.reshape(m, n // per, per)
    hi = np.where(informative, src, -np.inf).max(axis=2)
    lo = np.where(informative, src, np.inf).min(axis=2)
    nz = informative.any(axis=2)
    if (nz & (hi != lo)).any():
        return None
    out = np.where(nz, hi, 0).astype(np.float32)
    if not whole:
        return np.ascontiguousarray(out)
    values = out[nz]
    if values.size and (values != values[0]).any():
        return None
    return np.float32(values[0] if values.size else 0)


def merge_scales(scale: Any, codes: np.ndarray, granularity: str, group: int | None,
                 dtype: str) -> tuple[Any, float, float]:
    """Coarsen on purpose (formats-2026.md §7.4, ``--allow-scale-merge``): the codes are kept
    and every target group gets the least-squares scale of the weights it covers,
    sum(n_i * s_i) / sum(n_i) over its source groups (n_i = nonzero codes of group i),
    rounded to ``dtype``. Returns (the codec's scales, the relative Frobenius error
    |W' - W| / |W|, the largest ratio between source scales merged into one group)."""
    m, k = codes.shape
    given, width = as_scale_array(scale, (m, k), "merge")
    target = group_width(granularity, group, k)
    if target % width:
        raise ScaleError(f"groups of {target} weights straddle the given groups of {width}; nothing to merge")
    nz = (np.asarray(codes).reshape(m, k // width, width) != (1 if codes.dtype == np.uint8 else 0)).sum(axis=2)
    grouped = (1, 1, -1) if granularity == "tensor" else (m, k // target, -1)  # (rows, groups, sources)
    n = nz.reshape(grouped).astype(np.float64)
    s = given.reshape(grouped).astype(np.float64)
    total = n.sum(axis=2)
    merged = np.where(total > 0, (n * s).sum(axis=2) / np.maximum(total, 1), 0.0).astype(np.float32)
    merged = round_to(merged, dtype)
    used = n > 0
    hi = np.where(used, s, -np.inf).max(axis=2)
    lo = np.where(used, s, np.inf).min(axis=2)
    used_groups = total > 0  # an all-zero target group merges nothing (and has no ratio to divide)
    ratio = float(np.max(hi[used_groups] / np.where(lo[used_groups] > 0, lo[used_groups], np.inf), initial=1.0))
    # |W|^2 = sum n_i s_i^2 (each nonzero code is +-1); |W' - W|^2 = sum n_i (s' - s_i)^2
    err2 = (n * (merged[..., None].astype(np.float64) - s) ** 2).sum()
    ref2 = (n * s**2).sum()
    error = float(np.sqrt(err2 / ref2)) if ref2 > 0 else 0.0
    if granularity == "tensor":
        return np.float32(merged.reshape(-1)[0]), error, ratio
    return np.ascontiguousarray(merged), error, ratio


def round_to(values: Any, dtype: str) -> np.ndarray:
    """``values`` as float32, rounded to nearest in ``dtype`` (bf16: nearest even on the top
    half; f16 overflow gives inf, which the callers compare and report)."""
    values = np.asarray(values, np.float32)
    if dtype == "f16":
        with np.errstate(over="ignore"):
            return values.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = values.view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32)
    return values.astype(np.float32)


WIDER = {"f16": ("f16", "f32"), "bf16": ("bf16", "f32"), "f32": ("f32",)}  # dtypes that hold every value of a dtype


def always_exact(source: Any, target: Any, k: int) -> bool:
    """Does codec class ``target`` hold every scale codec class ``source`` can store, for rows
    of ``k`` weights — the same or a finer granularity, a dtype at least as wide? Then a
    conversion needs no look at the values to know it is exact (formats-2026.md §7.3)."""
    if target.scale_dtype not in WIDER[source.scale_dtype]:
        return False
    if target.scale_granularity == "tensor":
        return source.scale_granularity == "tensor"
    if target.scale_granularity == "row":
        return source.scale_granularity in ("tensor", "row")
    return group_width(source.scale_granularity, source.group_size, k) % target.group_size == 0
