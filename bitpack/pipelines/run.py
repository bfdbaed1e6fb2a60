"""``bitpack run``: the reference executor's logits for a few tokens, the most likely next
tokens (with their text when the model carries a tokenizer), and the logits saved as .npy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..containers.files import StagedFile, check_output_file
from ..errors import BitpackError
from ..executor import kept_codes_bytes


def check_logits_path(path: Path, *, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse, before the forward pass, a --save-logits path bitpack would not write as given:
    numpy appends .npy to any other name, so the file would land elsewhere than asked."""
    if path.suffix != ".npy":
        raise BitpackError(f"--save-logits {path}: the name must end in .npy (it is a NumPy array file); "
                           f"e.g. {path.name}.npy")
    check_output_file(path, overwrite=overwrite, inputs=inputs)


def save_logits(path: Path, logits: np.ndarray, *, overwrite: bool) -> None:
    """Write ``logits`` to exactly ``path`` all at once or not at all (a .part sibling renamed)."""
    with StagedFile(path, overwrite=overwrite) as out:
        np.save(out.file, np.asarray(logits, dtype=np.float32))


def top_tokens(logits: np.ndarray, positions: list[int], k: int) -> list[dict[str, Any]]:
    """The ``k`` highest logits at each position (ties in id order), with their softmax
    probability over the whole vocabulary."""
    rows = []
    for i in positions:
        row = logits[i].astype(np.float64)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        top = np.argsort(-logits[i], kind="stable")[:k]
        rows.append({"position": i, "top": [{"id": int(t), "logit": float(logits[i, t]), "prob": float(probs[t])}
                                            for t in top]})
    return rows


KEEP_SHARE = 0.5  # kept codes may use at most this share of the memory the system reports available


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (Linux), else None: unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def keep_for_continuation(model: Any, max_new: int, available: int | None = None) -> bool:
    """Whether the executor keeps each projection's decoded codes after the prompt's pass, so
    that every step of a continuation skips decoding (2.2 -> 1.2 s a step on the 1bitLLM-large-
    shaped TQ2_0 model): only when a step follows and the codes (a byte per weight) fit in KEEP_SHARE of
    the available memory. Unknown memory keeps nothing: the executor then holds one projection
    at a time, as without a continuation."""
    if max_new < 2:  # the first new token comes from the prompt's own logits
        return False
    need = kept_codes_bytes(model)  # 0 for a float model or a BitStack stack: nothing to keep
    available = available_memory() if available is None else available
    return need > 0 and available is not None and need <= KEEP_SHARE * available


def greedy_continuation(forward: Any, ids: list[int], last: np.ndarray, max_new: int,
                        stop: int | None) -> tuple[list[int], float]:
    """Up to ``max_new`` tokens, each the highest logit (lowest id on ties, as top_tokens) after
    the prompt and those before it (``last``: the prompt's own last logits, not computed again); stops
    after ``stop`` (EOS). ``forward(ids)`` re-runs the whole prefix each step: the executor's
    public API has no cache, and the reference is what is being checked. Returns the new ids and
    the seconds the continuation took."""
    start = time.perf_counter()
    new: list[int] = []
    token = int(np.argmax(last))  # argmax: the first of equal maxima
    while len(new) < max_new:
        new.append(token)
        if token == stop or len(new) == max_new:
            break
        token = int(np.argmax(forward(ids + new)[-1]))  # argmax: the first of equal maxima
    return new, time.perf_counter() - start
