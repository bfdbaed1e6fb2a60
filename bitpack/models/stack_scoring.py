"""Scoring a BitStack stack's blocks by perplexity (spec/bitstack.md §4.2): the model with
chosen block counts, and the (n - 1) x M evaluations of the reference's importance scoring.

Perplexity itself runs the executor, so it is given as ``evaluate(model) -> float``
(``bitpack.pipelines.ppl.perplexity`` on calibration windows); nothing here runs a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..bitstack.order import DEFAULT_MAX_PPL_PASSES, check_ppl_cost
from .arch import Kind
from .model import Entry, Float, Model


def stacked_model(base: Model, weights: Callable[[str, int], np.ndarray], counts: dict[str, int]) -> Model:
    """``base`` with every projection replaced by its reconstruction at ``counts[name]`` blocks.

    ``counts`` is read at every load, so changing it between forward passes changes the
    model without rebuilding it. Other tensors are ``base``'s own entries."""
    entries = []
    for e in base.entries:
        if e.kind is Kind.TERNARY:
            entries.append(Entry(e.name, e.kind, e.shape, "bitstack",
                                 lambda n=e.name: Float(weights(n, counts[n]), "F32"), source_name=e.source_name))
        else:
            entries.append(e)
    return Model(source=base.source, container=base.container, layout="bitstack (in memory)", arch=base.arch,
                 hparams=base.hparams, entries=entries, files=list(base.files), config=base.config,
                 tokenizer_dir=base.tokenizer_dir, tokenizer_kv=base.tokenizer_kv, precision="float")


def score_ppl(model: Model, weights: Callable[[str, int], np.ndarray], matrices: Sequence[str], n_blocks: int,
              evaluate: Callable[[Model], float], *, max_passes: int | None = DEFAULT_MAX_PPL_PASSES,
              progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """The reference's importance scoring (§4.2): for b = 1..n-1, every matrix at b blocks
    and matrix j alone at b + 1, ``evaluate`` (perplexity; lower = more important).

    Returns {"original_ppl", "ppl" ((n-1, M) array), "passes", "seconds"}."""
    passes = check_ppl_cost(len(matrices), n_blocks, max_passes)
    started = time.perf_counter()
    counts = {name: n_blocks for name in matrices}
    runner = stacked_model(model, weights, counts)
    original = float(evaluate(runner))
    table = np.full((max(n_blocks - 1, 0), len(matrices)), np.nan)
    for b in range(1, n_blocks):
        for name in matrices:
            counts[name] = b
        for j, name in enumerate(matrices):
            counts[name] = b + 1
            table[b - 1, j] = float(evaluate(runner))
            counts[name] = b
            if progress:
                progress(f"ppl level {b}: {name}", 0)
    return {"original_ppl": original, "ppl": table, "passes": passes,
            "seconds": round(time.perf_counter() - started, 3)}


__all__ = ["score_ppl", "stacked_model"]
