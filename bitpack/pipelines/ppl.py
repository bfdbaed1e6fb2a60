"""Perplexity with the reference executor: what BitStack's ``ppl`` order and ``--do_eval``
measure (spec/bitstack.md §4.2, §6)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import BitpackError
from ..executor import executor
from ..models.model import Model


def perplexity(model: Model, windows: Sequence[Sequence[int]] | np.ndarray, numerics: str = "exact") -> float:
    """exp(mean over windows of the mean next-token NLL), as the reference's ``eval_ppl`` and
    ``--do_eval`` compute it (spec §4.2, §6), with the reference executor."""
    means = []
    for w in windows:
        tokens = np.asarray(w, dtype=np.int64).reshape(-1)
        if tokens.size < 2:
            raise BitpackError("perplexity needs windows of at least 2 tokens")
        logits = executor(model, numerics).forward(tokens)[:-1].astype(np.float64)
        top = logits.max(axis=1, keepdims=True)
        logz = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        nll = logz - logits[np.arange(tokens.size - 1), tokens[1:]]
        means.append(float(nll.mean()))
    if not means:
        raise BitpackError("perplexity needs at least one window")
    return float(math.exp(float(np.mean(means))))


__all__ = ["perplexity"]
