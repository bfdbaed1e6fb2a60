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

import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..codecs import get_codec
from ..codecs._scales import (
    always_exact,
    merge_scales,
    round_to,
    to_codec_scales,
)
from ..codecs.base import GGUFCodec
from ..containers.gguf_read import GGUFFile, GGUFTensor
from ..containers.gguf_types import file_type, types
from ..errors import BitpackError, CodecError, CorruptDataError, ScaleError, ShapeError
from ..parallel import row_spans
from .arch import ALIASES, ARCHITECTURES, Kind, architecture, layer_count, slots
from .compare import compare_entries
from .floats import STORAGE
from .gguf_source import (
    ROTATING_DIALECTS,
    _codec_params,
    _rows_loader,
    _tensor_params,
    rotation_key,
)
from .gguf_target import GGUFPlan, PlannedTensor, codec_params, pick_dialect
from .model import Entry, Ternary

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
        try:
            src = _source_codec(f, t, source_params, gridded.get(t.name))
            if src is None:
                plan.tensors.append(_copied(f, t, dialect))
                continue
            planned, note = _repacked(f, t, src, codec0, dialect, allow_scale_rounding, allow_scale_merge)
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
               ("bitpack.codec_params", json.dumps(codec_params(plan), sort_keys=True), "string"),
               ("bitpack.source", json.dumps(source_info or {}, sort_keys=True), "string"),
               ("bitpack.version", __version__, "string")]
    return plan


def _dialect(f: GGUFFile, codec: GGUFCodec, dialect: str | None, allow_rotated: bool = False) -> str:
    """The target dialect (pick_dialect). Hadamard-rotated weights (Bonsai 2) are computed
    correctly only by a runtime that undoes the rotation: such a file goes to one, or is
    refused unless ``allow_rotated``."""
    arch = architecture(f.architecture).dialects if _known(f.architecture) else None
    rotated = rotation_key(f.kv)
    chosen = pick_dialect(codec.name, f.architecture, arch, dialect, prefer=ROTATING_DIALECTS if rotated else ())
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


def _source_codec(f: GGUFFile, t: GGUFTensor, params: dict[str, Any], slot: Kind | None):
    """The codec that reads the tensor's codes and scale: its type's, or for a float tensor in a
    weight-only graph's ternary slot (Bonsai's F16 GGUF) ``unpacked``, whose bytes are the values
    s x t, checked now to lie on their grid. None: copied as it is (every other tensor, and an
    embedding or head off the grid). A projection off the grid is refused: not a ternary model."""
    name = f.codec_name(t)
    if name is not None:
        return get_codec(name, **_tensor_params(name, t.name, _rows(t.shape), params, None, str(f.path)))
    if slot is None or f.type_name(t) not in STORAGE:
        return None
    codec = get_codec("unpacked", dtype=f.type_name(t).lower())
    try:
        codec.decode(f.raw(t), _rows(t.shape))
    except (CorruptDataError, ShapeError) as err:
        if slot is Kind.TERNARY:
            raise CodecError(f"is not ternary ({str(err).removeprefix('unpacked weights are not ternary: ')}); "
                             "a float model converts with --to bitstack") from None
        return None
    finally:
        f.release(t.name)
    return codec


def _repacked(f: GGUFFile, t: GGUFTensor, src, codec: GGUFCodec, dialect: str, allow_rounding: bool,
              allow_merge: bool) -> tuple[PlannedTensor, str | None]:
    """A ternary tensor re-encoded; its scale checked here, from a decode, so a refusal comes
    before any output exists -- unless the layouts alone say every scale and code fits."""
    rows = _rows(t.shape)
    bound = codec.for_shape(rows)
    planned = PlannedTensor(t.name, t.shape, bound.ggml_name, bound.type_ids[dialect], bound.nbytes(rows),
                            None, bound.get_config(), bound.bits_per_weight(rows),  # producers: _produced
                            done=lambda n=t.name: f.release(n))
    if (always_exact(src, bound, rows[1]) and (not bound.codes_restricted or src.codes_restricted)) \
            or _fits_by_parts(f, t.name, src, bound, rows):
        _produced(planned, f, src, bound, rows, allow_rounding)
        return planned, None
    codes, scale = src.decode(f.raw(t), rows)  # whole: the refusal names rows, a merge sees every scale
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
    _produced(planned, f, src, bound, rows, allow_rounding, merged)
    return planned, note


def _produced(planned: PlannedTensor, f: GGUFFile, src, codec: GGUFCodec, rows: tuple[int, int],
              allow_rounding: bool, merged: Any = None) -> None:
    """Set the tensor's producer, and for a large tensor of layouts whose rows are byte ranges
    of their own, its parts: blocks of about PART_WEIGHTS weights, which keep the working set in
    the CPU cache and memory at a few MB, and let both cores share the tensor."""
    convert = functools.partial(_convert, f, planned.name, src, codec, rows, allow_rounding, merged)
    planned.produce = functools.partial(convert, 0, rows[0])
    spans = _spans(src, codec, rows)
    if spans:
        planned.parts = [functools.partial(convert, start, stop) for start, stop in spans]


def _spans(src, codec: GGUFCodec, rows: tuple[int, int]) -> list[tuple[int, int]] | None:
    """The blocks of rows (start, stop) of about PART_WEIGHTS weights each (parallel.row_spans),
    for a tensor of more than one whose rows are byte ranges of their own in both layouts; else None."""
    m, k = rows
    if src.row_bytes(k) is None or codec.row_bytes(k) is None:
        return None
    return row_spans(m, k)


def _fits_by_parts(f: GGUFFile, name: str, src, codec: GGUFCodec, rows: tuple[int, int]) -> bool:
    """Every scale and code of the tensor fits ``codec`` exactly: each block of rows converts
    (Codec.transcode, from the bytes where the pair has a shortcut; the bytes are dropped), a
    few MB in memory, not the tensor's codes. False when one does not, or the data is corrupt,
    or the tensor has no parts: the caller then decodes it whole and refuses, merges or
    converts it as before."""
    spans = _spans(src, codec, rows)
    if not spans or codec.scale_granularity == "tensor":  # one scale for all rows: not a per-part question
        return False
    row_bytes = src.row_bytes(rows[1])
    for start, stop in spans:
        try:
            codec.transcode(src, f.raw(name)[start * row_bytes : stop * row_bytes], (stop - start, rows[1]))
        except CodecError:  # a scale or code that does not fit, or corrupt data (CodecError subclasses)
            return False
        finally:
            f.release(name, start * row_bytes, stop * row_bytes)
    return True


def _convert(f: GGUFFile, name: str, src, codec: GGUFCodec, rows: tuple[int, int], allow_rounding: bool,
             merged: Any, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of the tensor in the target codec (all of them, for a layout whose
    rows are not byte ranges of their own)."""
    m, k = rows
    if (start, stop) == (0, m):
        return _converted(f.raw(name), (m, k), src, codec, allow_rounding, merged)
    first, end = start * src.row_bytes(k), stop * src.row_bytes(k)
    try:
        out = _converted(f.raw(name)[first:end], (stop - start, k), src, codec, allow_rounding,
                         merged[start:stop] if np.ndim(merged) else merged)
    except CorruptDataError as err:
        raise CorruptDataError(f"{name}, rows {start}-{stop - 1} (positions counted from row {start}): {err}") \
            from None
    f.release(name, first, end)  # read once: the resident source stays a few parts, not the tensor
    return out


def _converted(raw: np.ndarray, shape: tuple[int, int], src, codec: GGUFCodec, allow_rounding: bool,
               merged: Any) -> np.ndarray:
    """Source bytes of ``shape`` in the target codec, with the plan's merged (or rounded) scale."""
    if merged is None and not allow_rounding:
        return codec.transcode(src, raw, shape)  # from the bytes where the two layouts allow
    codes, scale = src.decode(raw, shape)
    if merged is not None:
        scale = merged  # planned and listed in the notes
    elif np.ndim(scale) == 0:  # allow_rounding
        scale = np.float32(round_to(scale, codec.scale_dtype))  # listed in the plan's notes
    return codec.encode(codes, scale)


def _copied_kv(f: GGUFFile) -> list[tuple[str, Any, Any]]:
    return [(k, v, f.kv_types[k]) for k, v in f.kv.items() if k not in OWN_KEYS and not k.startswith(OWN_PREFIX)]


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
    diff = compare_entries(_ternary_entry(a, ta, ca), _ternary_entry(b, tb, cb))
    return diff["reason"] if diff else None


def _ternary_entry(f: GGUFFile, t: GGUFTensor, codec_name: str) -> Entry:
    """A ternary tensor of a file of any architecture as an entry to compare (every leading
    dimension counts as rows): its bytes, its decode, and its rows a block at a time."""
    rows = _rows(t.shape)
    params = _tensor_params(codec_name, t.name, rows, _codec_params(f, str(f.path)), None, str(f.path))
    codec = get_codec(codec_name, **params)
    return Entry(t.name, Kind.TERNARY, rows, codec_name, lambda: Ternary(*codec.decode(f.raw(t), rows)),
                 source_params=params, raw=lambda: f.raw(t),
                 load_rows=_rows_loader(f, t.name, rows, codec_name, params))
