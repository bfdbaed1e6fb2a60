"""What a BitStack write will do, decided before any tensor is written: the parameters and
order strategy (a model is decomposed, a stack copied block for block), the calibration
statistics checked against the model, and every output tensor declared (formats/bitstack.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bitstack import avd
from ..bitstack.order import check_order, check_ppl_cost, choose_order, uniform_order
from ..bitstack.svd import SVD_METHODS
from ..errors import BitpackError, ShapeError
from .arch import Kind
from .model import Entry, Model
from .stack_format import EXTRA_DTYPES, Naming
from .stack_sinks import StackTensor


@dataclass
class Item:
    entry: Entry
    tensors: list[StackTensor]
    matrix: int | None = None  # index among the projections; None for embeddings, norms, head



def stats_for(calibration: dict[str, Any], name: str) -> Any:
    stats = calibration.get(name)
    return stats if stats is not None else calibration.get(name.removesuffix(".weight"))


def check_calibration(projections: list[Entry], calibration: dict[str, Any]) -> bool:
    """Every projection needs statistics of its input width; returns whether all have probes."""
    missing, bad, probes = [], [], True
    for e in projections:
        stats = stats_for(calibration, e.name)
        if stats is None:
            missing.append(e.name)
            continue
        n = e.shape[1]
        sums = np.asarray(stats.norm_sums)
        if sums.shape != (n,) or int(stats.n_samples) < 1:
            bad.append(f"{e.name}: norm_sums {list(sums.shape)}, n_samples {stats.n_samples} (needs ({n},), >= 1)")
        probe = getattr(stats, "probe", None)
        if probe is None:
            probes = False
        elif np.ndim(probe) != 2 or np.shape(probe)[1] != n:
            bad.append(f"{e.name}: probe {list(np.shape(probe))} (needs (rows, {n}))")
    if missing:
        raise BitpackError(f"calibration statistics lack {len(missing)} projections: {', '.join(missing[:4])}"
                           + (" ..." if len(missing) > 4 else ""))
    if bad:
        raise BitpackError("calibration statistics do not fit the model: " + "; ".join(bad[:4]))
    return probes


def extra_dtype(e: Entry) -> str:
    return e.stored if e.stored in EXTRA_DTYPES else "F32"  # dequantized GGUF types hold f32 values


def plan_items(model: Model, naming: Naming, n_blocks: int, k: int, scaled: bool) -> list[Item]:
    items, j = [], 0
    for e in model.entries:
        if e.kind is Kind.TERNARY:
            m, n = e.shape
            tensors = []
            for i in range(n_blocks):
                q, u, vt = naming.block(e.name, i)
                tensors += [StackTensor(q, "U8", (m * n // 8,)), StackTensor(u, "F16", (m, k)), StackTensor(vt, "F16", (k, n))]
            if scaled:
                tensors.append(StackTensor(naming.act_scale(e.name), "F32", (n,)))
            items.append(Item(e, tensors, j))
            j += 1
        else:
            items.append(Item(e, [StackTensor(naming.extra(e.name), extra_dtype(e), tuple(e.shape))]))
    return items


@dataclass
class Job:
    """What a write does, decided before any tensor is written."""

    n_blocks: int
    k: int
    params: dict[str, Any]  # codec_params, stored in the output
    strategy: str  # the block order strategy
    how: str  # how it was chosen, for the report
    final: list[int] | None  # the order when known before streaming (copy, uniform), else None
    scaled: bool  # act_scale tensors are written


def copy_job(model: Model, src: Any, names: list[str], blocks: int | None, rank: int | None,
              calibration: dict[str, Any] | None, order: str | None, warnings: list[str]) -> Job:
    """stack -> stack: the blocks are copied, nothing is decomposed again."""
    n_blocks, k = src.n_blocks, src.k
    if blocks not in (None, n_blocks) or rank not in (None, k):
        raise BitpackError(f"{model.source} is a stack of {n_blocks} blocks of rank {k}; a stack is copied "
                           "block for block (re-decomposing needs the original model)")
    if calibration is not None or (order is not None and order != src.params.get("order")):
        raise BitpackError("a stack is copied with its own block order; calibration and --order need the "
                           "original model")
    short = [m.name for m in src.matrices if m.available < n_blocks]
    if short:
        raise BitpackError(f"{model.source}: {short[0]} has only some of its {n_blocks} blocks; cannot copy")
    params = dict(src.params)
    if src.table is not None:
        final = check_order(src.table.order, len(names), n_blocks, f"{model.source}: block order")
        strategy, how = params.get("order") or "unknown", "copied from the source stack"
    else:
        final = uniform_order(len(names), n_blocks)
        strategy, how = "uniform", "the source stack records no order; uniform"
        params["order"] = "uniform"
        warnings.append(how)
    return Job(n_blocks, k, params, strategy, how, final, src.matrices[0].act_scale is not None)


def decompose_job(projections: list[Entry], blocks: int | None, rank: int | None, svd: str,
                   calibration: dict[str, Any] | None, order: str | None, can_evaluate: bool,
                   max_ppl_passes: int | None) -> Job:
    """A model -> stack: parameters checked and the order strategy chosen before any work."""
    n_blocks = avd.DEFAULT_BLOCKS if blocks is None else blocks
    k = avd.DEFAULT_RANK if rank is None else rank
    for what, v in (("blocks", n_blocks), ("rank", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= avd.MAX_COUNT:
            raise BitpackError(f"--{what} must be a whole number from 1 to {avd.MAX_COUNT}, got {v!r}")
    n_blocks, k = int(n_blocks), int(k)
    if svd not in SVD_METHODS:
        raise BitpackError(f"svd must be one of {', '.join(SVD_METHODS)}, got {svd!r}")
    refused = []
    for e in projections:
        try:
            avd.check_shape(*e.shape)
        except ShapeError as err:
            refused.append(f"{e.name} {list(e.shape)}: {err}")
    if refused:
        raise BitpackError(f"bitstack cannot hold {len(refused)} projections: " + "; ".join(refused[:4]))
    probes = check_calibration(projections, calibration) if calibration is not None else False
    strategy, how = choose_order(order, calibrated=probes, can_evaluate=can_evaluate)
    if strategy == "ppl":
        check_ppl_cost(len(projections), n_blocks, max_ppl_passes)
    params = {"k": k, "niter": n_blocks, "scaled": calibration is not None, "folded": False,
              "svd_sign": "max-abs-positive", "scale_o_proj": True, "order": strategy, "svd": svd}
    final = uniform_order(len(projections), n_blocks) if strategy == "uniform" else None
    return Job(n_blocks, k, params, strategy, how, final, calibration is not None)


__all__ = ["Item", "Job", "copy_job", "decompose_job", "plan_items", "stats_for"]
