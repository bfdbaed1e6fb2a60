"""GGUF -> GGUF for any architecture: ternary tensors re-encoded, everything else copied.

A conversion between two GGUF ternary codecs does not need the model's graph. Every tensor
whose type a codec reads is decoded to codes and scale and encoded in the target codec, exactly
or refused (every offender named before a byte is written); every other tensor is copied byte
for byte under the id its type has in the target dialect; every metadata key is copied as it is,
except ``general.file_type`` and bitpack's own keys, which describe the new file. So models
bitpack's executor does not run (qwen35, gemma3, mixture-of-experts files with 3-D expert
tensors, whose leading dimensions count as rows) repack all the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._version import __version__
from ..codecs import get_codec
from ..codecs._scales import (
    always_exact,
    coarsest,
    merge_scales,
    round_to,
    to_codec_scales,
)
from ..codecs.base import GGUFCodec
from ..containers.gguf_read import GGUFFile, GGUFTensor
from ..containers.gguf_types import DIALECTS, codec_dialects, file_type, types
from ..errors import BitpackError, CodecError, ScaleError, ShapeError
from .arch import ALIASES, ARCHITECTURES, Kind, architecture, layer_count, slots
from .floats import STORAGE
from .gguf_source import ROTATING_DIALECTS, _codec_params, _tensor_params, rotation_key
from .gguf_target import GGUFPlan, PlannedTensor
from .grid import OffGrid, on_grid
from .model import Float

# Keys the new file states for itself; everything else is the source's, copied as it is.
OWN_KEYS = ("general.file_type", "general.alignment")
OWN_PREFIX = "bitpack."


def plan_repack(f: GGUFFile, codec_name: str, *, dialect: str | None = None,
                params: dict[str, Any] | None = None, allow_scale_rounding: bool = False,
                allow_scale_merge: bool = False, allow_rotated: bool = False,
                source_info: dict[str, Any] | None = None) -> GGUFPlan:
    """Everything that can refuse, before anything is written."""
    codec0 = get_codec(codec_name, **(params or {}))
    if not isinstance(codec0, GGUFCodec):
        raise BitpackError(f"{codec_name} is a safetensors layout; a GGUF source repacks to a GGUF codec")
    dialect = _dialect(f, codec0, dialect, allow_rotated)
    plan = GGUFPlan(dialect, codec0.name, [], [], alignment=f.alignment)
    if not _known(f.architecture):
        plan.warnings.append(f"bitpack does not know architecture {f.architecture!r}: whether the {dialect} "
                             "runtime runs it is not checked, and verify compares tensors, not logits")
    source_params = _codec_params(f, str(f.path))
    gridded = _grid_slots(f)
    refused, lossy, scales_refused = [], [], False
    for t in f.tensors:
        codec_name = f.codec_name(t)
        read = src = None
        if codec_name is not None:
            src = get_codec(codec_name, **_tensor_params(codec_name, t.name, _rows(t.shape), source_params, None,
                                                          str(f.path)))
            read = lambda t=t, src=src: src.decode(f.raw(t), _rows(t.shape))  # noqa: E731
        elif t.name in gridded and f.type_name(t) in STORAGE:
            read = _grid_reader(f, t, gridded[t.name], refused)
        if read is None:
            plan.tensors.append(_copied(f, t, dialect))
            continue
        try:
            planned, note = _repacked(f, t, read, src, codec0, dialect, allow_scale_rounding, allow_scale_merge)
        except (ShapeError, ScaleError, CodecError) as err:
            refused.append(f"{t.name}: {str(err).removeprefix(codec0.name + ' ')}")
            scales_refused |= isinstance(err, ScaleError)
            continue
        plan.tensors.append(planned)
        if note:
            lossy.append(note)
    if refused:  # the lossy flags only where a scale (not a shape or code) was the reason
        hint = (". --allow-scale-rounding rounds per-tensor scales; --allow-scale-merge merges differing scales "
                "(both lossy, each tensor listed)") if scales_refused else ""
        raise BitpackError(f"{codec0.name} cannot hold {len(refused)} tensors of {f.path} exactly: "
                           + "; ".join(refused[:4]) + (f"; and {len(refused) - 4} more" if len(refused) > 4 else "")
                           + hint)
    plan.notes.extend(lossy)
    plan.kv = [*_copied_kv(f), ("general.file_type", file_type(dialect, codec0.name), "u32"),
               ("bitpack.format_version", 1, "u32"), ("bitpack.dialect", dialect, "string"),
               ("bitpack.codec", codec0.name, "string"),
               ("bitpack.codec_params", json.dumps(_tensor_codec_params(plan), sort_keys=True), "string"),
               ("bitpack.source", json.dumps(source_info or {}, sort_keys=True), "string"),
               ("bitpack.version", __version__, "string")]
    return plan


def _dialect(f: GGUFFile, codec: GGUFCodec, dialect: str | None, allow_rotated: bool = False) -> str:
    """The target dialect: the one asked for, else the codec's first that runs a known
    architecture (any of the codec's for one bitpack does not know). Hadamard-rotated weights
    (Bonsai 2) are computed correctly only by a runtime that undoes the rotation: such a file
    goes to one, or is refused unless ``allow_rotated``."""
    writable = codec_dialects(codec.name)
    arch = architecture(f.architecture).dialects if _known(f.architecture) else None
    rotated = rotation_key(f.kv)
    if dialect is not None:
        if dialect not in DIALECTS or not DIALECTS[dialect].writable or dialect not in writable:
            raise BitpackError(f"{codec.name} is written in {', '.join(writable)}, not {dialect!r}")
        chosen = dialect
    else:
        runs = [d for d in writable if arch is None or d in arch]
        if not runs:
            raise BitpackError(f"no runtime executes a {f.architecture} model stored as {codec.name}")
        chosen = next((d for d in runs if d in ROTATING_DIALECTS), runs[0]) if rotated else runs[0]
    if rotated and chosen not in ROTATING_DIALECTS and not allow_rotated:
        raise BitpackError(
            f"{f.path} stores its weights Hadamard-rotated (key {rotated}); only {', '.join(ROTATING_DIALECTS)} "
            f"runtimes undo the rotation, and the {chosen} runtime would run it and write fluent but wrong "
            f"text. Write it for --dialect {ROTATING_DIALECTS[0]} (pq2_0, ptq1_0 or q2_0), or pass "
            "--allow-rotated to write it anyway")
    return chosen


def _rows(shape: tuple[int, ...]) -> tuple[int, int]:
    """A GGUF tensor as the codecs see it: every leading dimension counts as rows."""
    return math.prod(shape[:-1]), shape[-1]


def _copied(f: GGUFFile, t: GGUFTensor, dialect: str) -> PlannedTensor:
    """A tensor that is not ternary, copied under the id its type has in the target dialect."""
    source_type = f.ggml_type(t)
    target_type = types(dialect).get(t.type_id)
    if source_type is None or t.nbytes is None:
        raise BitpackError(f"{t.name} has type {t.type_id}, unknown in {f.dialect}: it cannot be copied")
    if target_type is None or target_type.name != source_type.name:
        raise BitpackError(f"{t.name} is {source_type.name} (id {t.type_id}), which {dialect} reads as "
                           f"{target_type.name if target_type else 'nothing'}: that runtime cannot hold it")
    return PlannedTensor(t.name, t.shape, source_type.name, t.type_id, t.nbytes, lambda n=t.name: f.raw(n),
                         done=lambda n=t.name: f.release(n))


def _grid_slots(f: GGUFFile) -> dict[str, Kind]:
    """The tensors of a weight-only graph that may be float on a ternary grid (Bonsai's F16
    GGUF): its projections, embedding and head, by canonical name."""
    if not _known(f.architecture) or not architecture(f.architecture).weight_only:
        return {}
    arch = architecture(f.architecture)
    return {name: slot.kind for name, slot, _ in slots(arch, layer_count(t.name for t in f.tensors), tied=False)
            if slot.kind is not Kind.NORM}


def _grid_reader(f: GGUFFile, t: GGUFTensor, kind: Kind, refused: list[str]):
    """The codes and scale of a float tensor on a ternary grid (grid.py), checked now; None for
    an embedding or head off the grid (copied as float); a projection off the grid is refused."""
    values = lambda: f.raw(t).view(STORAGE[f.type_name(t)]).reshape(_rows(t.shape))  # noqa: E731
    try:
        on_grid(Float(values(), f.type_name(t)).values if f.type_name(t) == "BF16" else values())
    except OffGrid as err:
        if kind is Kind.TERNARY:
            refused.append(f"{t.name} is not ternary ({err}); a float model converts with --to bitstack")
        return None
    finally:
        f.release(t.name)
    return lambda: on_grid(Float(values(), f.type_name(t)).values if f.type_name(t) == "BF16" else values())


def _repacked(f: GGUFFile, t: GGUFTensor, read: Callable[[], tuple[np.ndarray, Any]], src, codec: GGUFCodec,
              dialect: str, allow_rounding: bool, allow_merge: bool) -> tuple[PlannedTensor, str | None]:
    """A ternary tensor re-encoded (``read`` gives its codes and scale; ``src`` is its codec, None
    for floats on a grid); its scale checked here, from a decode, so a refusal comes before any
    output exists -- unless the layouts alone say every scale and code fits."""
    rows = _rows(t.shape)
    bound = codec.for_shape(rows)
    planned = PlannedTensor(t.name, t.shape, bound.ggml_name, bound.type_ids[dialect], bound.nbytes(rows),
                            _producer(read, bound, allow_rounding), bound.get_config(),
                            bound.bits_per_weight(rows), done=lambda n=t.name: f.release(n))
    if src is not None and always_exact(src, bound, rows[1]) and (not bound.codes_restricted or src.codes_restricted):
        return planned, None
    codes, scale = read()
    note, merged = None, None
    try:
        to_codec_scales(scale, codes, bound.scale_granularity, bound.group_size, bound.scale_dtype, bound.name)
    except ScaleError:
        if allow_rounding and np.ndim(scale) == 0:
            rounded = np.float32(round_to(scale, bound.scale_dtype))
            note = f"{t.name}: scale {float(scale)!r} rounded to {bound.scale_dtype} {float(rounded)!r}"
        elif allow_merge and np.ndim(scale):
            merged, error, ratio = merge_scales(scale, codes, bound.scale_granularity, bound.group_size,
                                                bound.scale_dtype)
            note = (f"{t.name}: scales merged (--allow-scale-merge): relative weight error {error:.2e}, "
                    f"largest merged scale ratio {ratio:.3g}")
        else:
            raise
    bound.check_codes(codes)
    f.release(t.name)
    if merged is not None:
        planned.produce = _producer(read, bound, allow_rounding, merged)
    return planned, note


def _producer(read: Callable[[], tuple[np.ndarray, Any]], codec: GGUFCodec, allow_rounding: bool,
              merged: Any = None) -> Callable[[], np.ndarray]:
    def produce() -> np.ndarray:
        codes, scale = read()
        if merged is not None:
            scale = merged  # planned and listed in the notes
        elif np.ndim(scale) == 0 and allow_rounding:
            scale = np.float32(round_to(scale, codec.scale_dtype))  # listed in the plan's notes
        return codec.encode(codes, scale)

    return produce


def _copied_kv(f: GGUFFile) -> list[tuple[str, Any, Any]]:
    return [(k, v, f.kv_types[k]) for k, v in f.kv.items() if k not in OWN_KEYS and not k.startswith(OWN_PREFIX)]


def _tensor_codec_params(plan: GGUFPlan) -> dict[str, Any]:
    return {t.name: {k: v for k, v in t.codec.items() if k != "id"} for t in plan.tensors
            if t.codec and len(t.codec) > 1}


def _known(name: str | None) -> bool:
    return name in ARCHITECTURES or name in ALIASES


def knows_architecture(path: Path, dialect: str | None = None) -> bool:
    """Can bitpack build a model of this GGUF file (else it repacks it tensor by tensor)?"""
    with GGUFFile(path, dialect=dialect) as f:
        return _known(f.architecture)


def repacks(path: Path, dialect: str | None = None) -> bool:
    """Does GGUF -> GGUF go tensor by tensor, every other key and tensor copied as it is? For
    architectures bitpack does not run, and for weight-only graphs (qwen3), whose files carry
    keys (prism.*, the tokenizer's) that a rebuilt header would drop and whose every ternary
    tensor, embedding and head included, re-encodes on its own."""
    with GGUFFile(path, dialect=dialect) as f:
        return not _known(f.architecture) or architecture(f.architecture).weight_only


def compare_files(ref: GGUFFile, cand: GGUFFile) -> tuple[list[str], list[dict[str, Any]]]:
    """(metadata differences, tensor differences) of two GGUF files, tensor by tensor: ternary
    tensors by codes and their coarsest exact scale (any two layouts of the same weights
    agree), every other tensor by its bytes. Needs no architecture."""
    meta = [f"{k}: {ref.kv[k]!r} vs {cand.kv.get(k)!r}" for k in ("general.architecture",)
            if ref.kv.get(k) != cand.kv.get(k)]
    names_ref, names_cand = {t.name for t in ref.tensors}, {t.name for t in cand.tensors}
    meta += [f"{n}: missing from the candidate" for n in sorted(names_ref - names_cand)]
    meta += [f"{n}: only in the candidate" for n in sorted(names_cand - names_ref)]
    diffs = []
    for t in ref.tensors:
        if t.name not in names_cand:
            continue
        why = _differs(ref, t, cand, cand.tensor(t.name))
        if why:
            diffs.append({"name": t.name, "reason": why})
        ref.release(t.name)
        cand.release(t.name)
    return meta, diffs


def _differs(a: GGUFFile, ta: GGUFTensor, b: GGUFFile, tb: GGUFTensor) -> str | None:
    if ta.shape != tb.shape:
        return f"shape {list(ta.shape)} vs {list(tb.shape)}"
    ca, cb = a.codec_name(ta), b.codec_name(tb)
    if (ca is None) != (cb is None):
        return "one is ternary, the other is not"
    if ca is None:
        if a.type_name(ta) != b.type_name(tb):
            return f"type {a.type_name(ta)} vs {b.type_name(tb)}"
        return None if np.array_equal(a.raw(ta), b.raw(tb)) else "the bytes differ"
    rows = _rows(ta.shape)
    decoded = []
    for f, t, c in ((a, ta, ca), (b, tb, cb)):
        params = _tensor_params(c, t.name, rows, _codec_params(f, str(f.path)), None, str(f.path))
        decoded.append(get_codec(c, **params).decode(f.raw(t), rows))
    (codes_a, scale_a), (codes_b, scale_b) = decoded
    wrong = int(np.count_nonzero(codes_a != codes_b))
    if wrong:
        return f"{wrong} of {codes_a.size} codes differ"
    sa, sb = coarsest(scale_a, codes_a), coarsest(scale_b, codes_b)
    if np.ndim(sa) != np.ndim(sb) or not np.array_equal(np.float32(sa), np.float32(sb)):
        return "the scales differ"
    return None
