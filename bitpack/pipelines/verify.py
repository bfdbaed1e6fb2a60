"""``bitpack verify``: is a candidate the same model as a reference?

Two steps (spec/architectures.md §6.4): first every tensor is decoded to canonical form and
compared bitwise, which names the tensor at fault; then both models run through the
reference executor on the same tokens and their logits are compared. Identical canonical
tensors give identical logits, so a difference in step 2 alone would be an executor bug.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..bitstack.budget import blocks_summary
from ..containers.gguf_read import GGUFFile
from ..errors import BitpackError
from ..executor import executor
from ..models.arch import Kind
from ..models.compare import compare_entries
from ..models.gguf_repack import compare_files, knows_architecture
from ..models.gguf_source import rotation_of
from ..models.model import Model
from .open import open_model, resolve, sniff

DEFAULT_TOKENS = 16


def default_tokens(vocab: int, n: int = DEFAULT_TOKENS) -> list[int]:
    """Deterministic ids spread over the vocabulary (the same for every run and model)."""
    return [int(t) for t in np.random.default_rng(20241).integers(0, vocab, n)]


def compare_models(ref: Model, cand: Model, *, skip_projections: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
    """(metadata differences, tensor differences), each named; ``skip_projections`` leaves the
    projections to the logits (a lossy candidate)."""
    meta = []
    if ref.arch.name != cand.arch.name:
        meta.append(f"architecture: {ref.arch.name} vs {cand.arch.name}")
    for key, value in ref.hparams.as_dict().items():
        other = getattr(cand.hparams, key)
        if value != other and not (isinstance(value, float) and np.float32(value) == np.float32(other)):
            meta.append(f"{key}: {value!r} vs {other!r}")
    names_ref = {e.name for e in ref.entries}
    names_cand = {e.name for e in cand.entries}
    for name in sorted(names_ref - names_cand):
        meta.append(f"{name}: missing from the candidate")
    for name in sorted(names_cand - names_ref):
        meta.append(f"{name}: only in the candidate")
    tensors = []
    by_name = {e.name: e for e in cand.entries}
    for e in ref.entries:
        if e.name not in by_name:
            continue
        other = by_name[e.name]
        if skip_projections and e.kind is Kind.TERNARY:
            continue
        diff = compare_entries(e, other)
        if diff:
            tensors.append({"name": e.name, **diff})
        for done in (e, other):  # keep resident memory to the tensors in hand
            if done.release:
                done.release()
    return meta, tensors


def logits_report(ref: np.ndarray, cand: np.ndarray) -> dict[str, Any]:
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    identical = bool(np.array_equal(ref, cand))
    report = {
        "identical": identical,
        "max_abs_diff": float(diff.max()),
        "max_rel_diff": float(diff.max() / max(np.abs(ref).max(), 1e-30)),
        "top1_agreement": float((ref.argmax(-1) == cand.argmax(-1)).mean()),
        "kl": None,
    }
    if not identical:
        report["kl"] = float(_kl(ref, cand))
    return report


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """Mean over positions of KL(softmax(p) || softmax(q)), in nats."""
    p = p_logits.astype(np.float64)
    q = q_logits.astype(np.float64)
    log_p = p - p.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    log_q = q - q.max(-1, keepdims=True)
    log_q -= np.log(np.exp(log_q).sum(-1, keepdims=True))
    return float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())


def verify(reference: str | Path | Model, candidate: str | Path | Model, *, tokens: list[int] | None = None,
           n_tokens: int = DEFAULT_TOKENS, numerics: str = "exact", atol: float | None = None,
           budget: int | str | None = None, blocks: int | dict[str, int] | None = None, max_kl: float | None = None, min_top1: float | None = None,
           reference_options: dict[str, Any] | None = None,
           candidate_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report ``verify --json`` prints; ``report["identical"]`` or ``report["passed"]``.

    A BitStack candidate is lossy by design: it loads at ``budget`` or with ``blocks`` per
    matrix (all blocks by default),
    its projections are not compared tensor by tensor (their error is what the budget buys),
    and it passes when its structure matches and the logits are within ``max_kl`` (nats) and
    ``min_top1`` where given."""
    started = time.perf_counter()
    unknown = _unknown_architecture(reference, candidate, reference_options, candidate_options)
    if unknown:
        return _verify_files(reference, candidate, unknown, reference_options, candidate_options, started)
    ref = reference if isinstance(reference, Model) else open_model(reference, **(reference_options or {}))
    stack_options = {k: v for k, v in (("budget", budget), ("blocks", blocks)) if v is not None}
    cand = candidate if isinstance(candidate, Model) else open_model(candidate, **(candidate_options or {}),
                                                                     **stack_options)
    lossy = cand.stack is not None
    meta, tensors = compare_models(ref, cand, skip_projections=lossy)
    if tokens is None:
        tokens = default_tokens(min(ref.hparams.vocab_size, cand.hparams.vocab_size), n_tokens)
    report: dict[str, Any] = {"reference": ref.source, "candidate": cand.source, "tokens": tokens,
                              "numerics": numerics, "metadata_differences": meta,
                              "differing_tensors": [t["name"] for t in tensors][:20],
                              "tensor_differences": tensors[:20],
                              # what reading either side assumed (e.g. a duplicate config key resolved)
                              "warnings": list(dict.fromkeys([*ref.warnings, *cand.warnings]))}
    if ref.arch.name == cand.arch.name and not any("missing" in m or "only in" in m for m in meta):
        report.update(logits_report(executor(ref, numerics).forward(tokens),
                                    executor(cand, numerics).forward(tokens)))
    else:
        report.update(identical=False, max_abs_diff=None, max_rel_diff=None, top1_agreement=None, kl=None)
    within = report["identical"] or (atol is not None and report["max_abs_diff"] is not None
                                     and report["max_abs_diff"] <= atol)
    missed: list[str] = []
    if lossy:
        report.update(lossy=True, **_stack_keys(cand))
        measured = report["identical"] or all(
            report[k] is not None and np.isfinite(report[k]) for k in ("kl", "max_abs_diff"))
        missed = _missed_thresholds(report, max_kl, min_top1) if measured else []
        within = measured and not missed
        report["thresholds"] = {"max_kl": max_kl, "min_top1": min_top1}
    report["missed_thresholds"] = missed
    report["passed"] = bool(within and not meta and (not tensors or atol is not None))
    report["verdict"] = _verdict(report, lossy and max_kl is None and min_top1 is None)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _missed_thresholds(report: dict[str, Any], max_kl: float | None, min_top1: float | None) -> list[str]:
    """Each threshold a lossy candidate missed, as the user wrote it: a failure names its gate."""
    missed = []
    kl = report["kl"] or 0.0  # None when the logits are identical
    if max_kl is not None and kl > max_kl:
        missed.append(f"KL {kl:.6g} nats exceeds --max-kl {max_kl:g}")
    if min_top1 is not None and report["top1_agreement"] < min_top1:
        missed.append(f"top-1 agreement {report['top1_agreement']:.6g} is below --min-top1 {min_top1:g}")
    return missed


# What a verify report concluded, in words. A lossy (BitStack) candidate with no threshold is
# measured, not judged: it exits 0 because nothing was asked of it, and says so rather than
# "within tolerance" (there was no tolerance).
def _verdict(report: dict[str, Any], unjudged: bool) -> str:
    if report["identical"] and report["passed"]:
        return "identical"
    if not report["passed"]:
        return "different"
    return "measured, no threshold" if unjudged else "within tolerance"


def _unknown_architecture(reference: Any, candidate: Any, *options: dict[str, Any] | None) -> str | None:
    """Why a GGUF side cannot run in bitpack's executor, if it cannot: an architecture it does
    not know, or weights stored rotated. Such files are compared tensor by tensor only."""
    for side, opts in zip((reference, candidate), options, strict=True):
        if isinstance(side, Model):
            continue
        path = resolve(side).path
        if sniff(path) != "gguf":
            continue
        with GGUFFile(path, dialect=(opts or {}).get("dialect")) as f:
            if not knows_architecture(path, (opts or {}).get("dialect")):
                return f"bitpack's executor does not run architecture {f.architecture or '(none)'!r}"
            _, problem = rotation_of(f, str(path))  # from the header: no tensor is read
            if problem:
                return f"{path.name} stores its weights Hadamard-rotated under a contract bitpack does not run ({problem})"
    return None


def _verify_files(reference: Any, candidate: Any, why: str, ref_opts: dict[str, Any] | None,
                  cand_opts: dict[str, Any] | None, started: float) -> dict[str, Any]:
    """Two GGUF files the executor cannot run (``why``): every tensor compared (codes and
    scales of ternary ones, bytes of the rest); logits are not compared, and the report says so."""
    for side in (reference, candidate):
        if isinstance(side, Model) or sniff(resolve(side).path) != "gguf":
            raise BitpackError(f"{why}: bitpack can compare two GGUF files of it tensor by tensor, not a GGUF "
                               "file with another kind of source")
    with GGUFFile(resolve(reference).path, dialect=(ref_opts or {}).get("dialect")) as ref,             GGUFFile(resolve(candidate).path, dialect=(cand_opts or {}).get("dialect")) as cand:
        meta, tensors = compare_files(ref, cand)
    identical = not meta and not tensors
    return {"reference": str(reference), "candidate": str(candidate), "tokens": [], "numerics": None,
            "metadata_differences": meta, "differing_tensors": [t["name"] for t in tensors][:20],
            "tensor_differences": tensors[:20], "identical": identical, "max_abs_diff": None,
            "max_rel_diff": None, "top1_agreement": None, "kl": None, "logits_compared": False,
            "missed_thresholds": [], "verdict": "identical" if identical else "different",
            "note": f"logits were not compared: {why}; every tensor was compared instead",
            "passed": identical, "seconds": round(time.perf_counter() - started, 3)}


def _stack_keys(cand: Model) -> dict[str, Any]:
    """What a BitStack candidate loaded: the budget asked for, the configuration chosen, the
    bytes actually read, and its blocks per matrix."""

    sel = cand.stack
    return {"budget_bytes": sel.budget_bytes, "config_bytes": sel.config_bytes, "bytes_loaded": sel.bytes_loaded,
            "blocks_per_matrix": blocks_summary(list(sel.blocks.values()))}
