"""``bitpack inspect``: what a model file holds, tensor by tensor, and what looks wrong.

Reads through the same readers as ``convert``, one tensor at a time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs import get_codec, list_codecs
from ..codecs._scales import coarsest
from ..containers.gguf_read import GGUFFile
from ..containers.gguf_types import DIALECTS
from ..models.gguf_repack import knows_architecture
from ..models.gguf_source import ROTATING_DIALECTS, rotation_key
from ..models.model import Float, Ternary
from ..models.stack_source import is_stack, stack_report
from .open import open_model, resolve, sniff

FLOAT_BITS = {"F32": 32, "F16": 16, "BF16": 16, "F64": 64}
# A BitNet weight scale is mean|W| (or its inverse): values far outside this range suggest
# the scale convention (multiply vs divide) was misread somewhere upstream.
PLAUSIBLE_SCALE = (1e-3, 1e2)
_CODECS = set(list_codecs())


def inspect(path: str | Path, *, dialect: str | None = None, tile_params: dict[str, Any] | None = None,
            scale_convention: str | None = None, architecture: str | None = None) -> dict[str, Any]:
    source = resolve(path)  # a Hub repo id becomes its snapshot, so a Hub stack is seen as one
    if is_stack(source.path):
        return inspect_stack(source.path)
    if sniff(source.path) == "gguf" and not knows_architecture(source.path, dialect):
        return inspect_file(path, source.path, dialect)
    model = open_model(source.path, dialect=dialect, tile_params=tile_params, scale_convention=scale_convention,
                       architecture=architecture)
    warnings = list(model.warnings)
    tensors = []
    params = 0
    for e in model.entries:
        n = int(np.prod(e.shape))
        params += n
        item: dict[str, Any] = {"name": e.name, "shape": list(e.shape)}
        value = e.load()
        if isinstance(value, Ternary):
            item.update(_ternary(e, value, model.container, warnings, model.arch.weight_only))
        else:
            assert isinstance(value, Float)
            item.update(codec=None, dtype=value.stored, bits_per_weight=FLOAT_BITS.get(value.stored), scale=None)
        tensors.append(item)
    if model.container == "gguf":
        if model.tokenizer_kv.get("tokenizer.ggml.model", (None,))[0] == "gpt2" and \
                "tokenizer.ggml.pre" not in model.tokenizer_kv:
            warnings.append("tokenizer.ggml.pre is missing: llama.cpp falls back to a default pre-tokenizer "
                            "and warns that generation quality will be degraded")
        if not model.tokenizer_kv:
            warnings.append("the file carries no tokenizer")
        if model.rotated:
            warnings += _rotation_warning([model.rotated], model.rotation_problem)
    size = sum(Path(f).stat().st_size for f in model.files if Path(f).suffix in (".gguf", ".safetensors"))
    return {
        "path": str(path),
        "container": model.container,
        "layout": model.layout,
        "precision": model.precision,
        "dialect": model.dialect,
        "read_by": DIALECTS[model.dialect].readers if model.dialect in DIALECTS else None,
        "architecture": model.arch.name,
        "linear_class": model.linear_class,
        "hparams": model.hparams.as_dict(),
        "tensors": tensors,
        "parameters": params,
        "bits_per_weight": round(8 * size / params, 4) if params else None,
        "warnings": warnings,
    }


def inspect_file(path: str | Path, local: Path, dialect: str | None) -> dict[str, Any]:
    """A GGUF file of an architecture bitpack does not run: its dialect, readers and every
    tensor's type, codec and size, from the header alone."""
    with GGUFFile(local, dialect=dialect) as f:
        tensors = [{"name": t.name, "shape": list(t.shape), "type": f.type_name(t), "codec": f.codec_name(t),
                    "dtype": None if f.codec_name(t) else f.type_name(t), "scale": None,
                    "bits_per_weight": round(8 * t.nbytes / math.prod(t.shape), 4) if t.nbytes else None}
                   for t in f.tensors]
        params = sum(math.prod(t.shape) for t in f.tensors)
        return {"path": str(path), "container": "gguf", "layout": f"gguf ({f.dialect})", "precision": None,
                "dialect": f.dialect, "read_by": DIALECTS[f.dialect].readers, "architecture": f.architecture,
                "linear_class": None, "hparams": None, "tensors": tensors, "parameters": params,
                "bits_per_weight": round(8 * local.stat().st_size / params, 4) if params else None,
                "warnings": [*f.warnings, f"bitpack does not run architecture {f.architecture!r}: tensors are "
                             "listed from the header; convert repacks it to other GGUF codecs",
                             *_rotation_warning(f.kv)]}


def _rotation_warning(keys: Any, problem: str | None = "") -> list[str]:
    """Who computes a rotated file correctly; ``problem``: why bitpack's executor does not run its
    contract (None: it does; "": not asked, a graph the executor does not run)."""
    key = rotation_key(keys)
    if key is None:
        return []
    ours = "" if problem == "" else (" and bitpack's executor (which applies the transform)" if problem is None
                                     else f"; bitpack does not run this contract ({problem})")
    return [f"weights are stored Hadamard-rotated ({key}): only {', '.join(DIALECTS[d].readers for d in ROTATING_DIALECTS)}"
            f"{ours if problem is None else ''} compute this file correctly{ours if problem else ''}; other runtimes "
            "produce fluent but wrong text"]


def _ternary(e, t: Ternary, container: str, warnings: list[str], weight_only: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"codec": e.stored if e.stored in _CODECS else None, "dtype": None if e.stored in _CODECS else e.stored}
    if e.stored in _CODECS:
        codec = get_codec(e.stored, **(e.source_params or {}))
        out["bits_per_weight"] = round(codec.bits_per_weight(e.shape), 4)
        if e.source_params:
            out["params"] = e.source_params
    else:  # floats: master weights ternarized here, or (weight-only graphs) values read on their grid
        out["bits_per_weight"] = FLOAT_BITS.get(e.stored)
        out["ternarized"] = "on its grid (exact)" if weight_only else "absmean"
        if t.borderline:
            out["borderline"] = t.borderline
    scale = coarsest(t.scale, t.codes)  # the granularity the weights need, whatever the layout stores
    if np.ndim(scale):
        width = t.codes.shape[1] // scale.shape[1]
        out["scale"] = {"per_block": True, "granularity": "row" if scale.shape[1] == 1 else f"group of {width}",
                        "min": float(scale.min()), "max": float(scale.max())}
    else:
        out["scale"] = float(scale)
        lo, hi = PLAUSIBLE_SCALE
        if scale != 0 and not weight_only and not lo <= abs(float(scale)) <= hi:
            warnings.append(f"{e.name}: scale {float(scale):.4g} is unusual for a BitNet weight; "
                            "check the scale convention (multiply vs divide)")
    if not t.codes.any():
        warnings.append(f"{e.name}: every weight is zero (as in the corrupted bitnet-b1.58-2B-4T revisions); "
                        "use another revision of the model")
    counts = np.bincount((t.codes.reshape(-1).view(np.uint8) + 1) & 3, minlength=3)
    out["fractions"] = {"-1": round(counts[0] / t.codes.size, 4), "0": round(counts[1] / t.codes.size, 4),
                        "+1": round(counts[2] / t.codes.size, 4)}
    return out


def inspect_stack(path: str | Path) -> dict[str, Any]:
    """A BitStack stack from its header alone (no block is read): every matrix with its blocks
    and bytes per block, the budget table, and the usual keys."""

    report = stack_report(path)
    matrices = report.pop("matrices")
    weights = sum(m["shape"][0] * m["shape"][1] for m in matrices)
    total = report["max_bytes"]
    report["tensors"] = [{"name": m["name"], "shape": m["shape"], "codec": "bitstack", "dtype": None,
                          "blocks": m["blocks"], "block_bytes": m["block_bytes"],
                          "bits_per_weight": round(m["bits_per_weight_per_block"] * m["blocks"], 4), "scale": None}
                         for m in matrices]
    report.update(dialect=None, linear_class=None, parameters=weights,
                  bits_per_weight=round(8 * (total - report["extra_bytes"]) / weights, 4) if weights else None)
    return report
