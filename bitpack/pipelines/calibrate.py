"""Calibration statistics for BitStack's activation-aware scaling (spec/bitstack.md §2.1, §6).

The uncompressed model runs in exact numerics on random windows of a user-supplied text,
and a capture hook on the executor sees the float32 input X [T, K] of every projection.
Per projection this keeps, per window b (a "sample"), the per-channel L2 norm over tokens
``sqrt(sum_t X[b, t, j]^2)``, summed over windows in float64, from which

    s_j = (1/N) * sum_b sqrt(sum_t X[b, t, j]^2) + 1e-3        (bitpack.bitstack.avd.act_scale)

-- the reference's ``get_act_scale`` -- and a seeded uniform sample of input rows (tokens),
the same token positions for every projection, for whatever needs real activations later.
Memory stays bounded whatever the text: K float64 sums and r x K float32 probe rows per
projection, plus the executor's one layer of weights.

Windows follow the reference's ``get_wikitext2``: Python ``random`` seeded with ``seed``, each
window ``tokens[i:i + seqlen]`` with ``i = random.randint(0, len(tokens) - seqlen - 1)``.
Defaults (``plan``): seqlen = min(2048, the model's context length); n_samples = 256, capped
at ``len(tokens) // seqlen`` (at least 1) -- as many windows as the text holds without
reading every token more than about once on average -- unless the caller asks for more.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import BitpackError
from ..executor.forward import Executor
from ..models.model import Model

MAX_SEQLEN = 2048  # the reference's --seqlen
DEFAULT_SAMPLES = 256  # the reference's scripts/decompose.sh --nsamples


@dataclass
class ActStats:
    norm_sums: np.ndarray  # float64 (K,): sum over samples b of sqrt(sum_t X[b,t,j]^2)
    n_samples: int
    probe: np.ndarray  # float32 (r, K): a seeded random sample of input rows (tokens), r <= probe_rows



def plan(model: Model, n_tokens: int, seqlen: int | None = None, n_samples: int | None = None) -> tuple[int, int]:
    """(seqlen, n_samples) for a text of ``n_tokens`` tokens, defaults filled in (module docstring)."""
    if seqlen is None:
        seqlen = min(MAX_SEQLEN, model.hparams.context_length)
    if seqlen < 1:
        raise BitpackError(f"the calibration window must hold at least one token (got {seqlen})")
    if n_samples is None:
        n_samples = min(DEFAULT_SAMPLES, max(1, n_tokens // seqlen))
    if n_samples < 1:
        raise BitpackError(f"at least one calibration window is needed (got {n_samples})")
    return seqlen, n_samples


def windows(tokens: list[int], seqlen: int, n_samples: int, seed: int = 0) -> list[list[int]]:
    """``n_samples`` random windows of ``seqlen`` tokens, exactly as the reference draws them."""
    if len(tokens) < seqlen + 1:
        raise BitpackError(f"the calibration text has {len(tokens)} tokens; windows of {seqlen} tokens need at "
                           f"least {seqlen + 1}. Give a longer text (or a shorter window)")
    rng = random.Random(seed)  # the same draws as the reference's random.seed(seed); random.randint
    out = []
    for _ in range(n_samples):
        i = rng.randint(0, len(tokens) - seqlen - 1)
        out.append(list(tokens[i : i + seqlen]))
    return out


def collect(model: Model, windows: list[list[int]], probe_rows: int = 256, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> dict[str, ActStats]:
    """One ActStats per projection (canonical name) from the uncompressed model in exact
    numerics; ``progress(done, total)`` after every window."""
    if not windows:
        raise BitpackError("no calibration windows to run")
    total = sum(len(w) for w in windows)
    r = min(probe_rows, total)
    picks = np.sort(np.random.default_rng(seed).choice(total, size=r, replace=False))  # global token rows
    stats: dict[str, ActStats] = {}
    window_rows = np.empty(0, dtype=np.int64)  # rows of the current window that go to the probe
    window_slots = np.empty(0, dtype=np.int64)  # and where they go
    last: list = [None, None]  # (input array, its norms): q/k/v and gate/up share one input

    def capture(name: str, x: np.ndarray) -> None:
        if last[0] is not x:
            x64 = x.astype(np.float64)
            last[0], last[1] = x, np.sqrt(np.einsum("tk,tk->k", x64, x64))
        s = stats.get(name)
        if s is None:
            s = stats[name] = ActStats(np.zeros(x.shape[1]), 0, np.zeros((r, x.shape[1]), np.float32))
        s.norm_sums += last[1]
        s.n_samples += 1
        if window_rows.size:
            s.probe[window_slots] = x[window_rows]

    ex = Executor(model, "exact", capture=capture)
    offset = 0
    for b, window in enumerate(windows):
        lo, hi = np.searchsorted(picks, [offset, offset + len(window)])
        window_rows, window_slots = picks[lo:hi] - offset, np.arange(lo, hi)
        ex.forward(window, with_head=False)
        last[0] = last[1] = None
        offset += len(window)
        if progress is not None:
            progress(b + 1, len(windows))
    return stats
