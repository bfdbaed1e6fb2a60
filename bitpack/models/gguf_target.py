"""Plan a GGUF file for a canonical model: metadata, tensor table and a producer per tensor.

Everything that can refuse does so here, before a byte is written: the dialect must run
the architecture and the codec (gguf.md §3, §4.1), every projection's shape must fit the
codec (all offenders listed at once), and every scale must survive exactly (codecs.md §10)
unless the caller allows rounding, in which case every rounded tensor is listed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._version import __version__
from ..codecs import codec_class, get_codec, list_codecs
from ..codecs._scales import merge_scales, round_to, to_codec_scales, unit
from ..codecs.base import GGUFCodec
from ..codecs.tiles import Tiles
from ..containers.files import check_output_file
from ..containers.gguf_kv import value_type
from ..containers.gguf_types import (
    DEFAULT_ALIGNMENT,
    DIALECTS,
    GGMLType,
    codec_dialects,
    file_type,
    gguf_codecs,
    types,
)
from ..containers.gguf_write import GGUFWriter
from ..dtypes import FLOAT_STORAGE
from ..errors import BitpackError, CodecError, ScaleError
from ..parallel import row_spans, write_in_order
from .arch import Kind, qk_row_order
from .floats import exact_in, rounded_count, stored_as
from .model import (
    Entry,
    Float,
    Model,
    fit_codec,
    read_scales,
    require_ternary,
)
from .tokenizer import tokenizer_kv

# --embed-dtype: the stored float dtypes (dtypes.FLOAT_STORAGE), spelled lower case, narrowest first
EMBED_DTYPES = tuple(n.lower() for n in sorted(FLOAT_STORAGE, key=lambda n: FLOAT_STORAGE[n].itemsize))


@dataclass
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # NumPy order
    type_name: str  # "F32", "I2_S", ...
    type_id: int
    nbytes: int
    produce: Callable[[], np.ndarray]  # the exact bytes (or an array whose bytes they are)
    codec: dict[str, Any] | None = None  # resolved codec config for ternary tensors
    bits_per_weight: float | None = None
    done: Callable[[], None] | None = None  # called once the bytes are written (drops source pages)
    # Or the bytes in consecutive pieces (blocks of rows), produced and written one at a time so a
    # large tensor is never whole in memory; ``produce`` still gives them all at once.
    parts: list[Callable[[], np.ndarray]] | None = None


@dataclass
class GGUFPlan:
    dialect: str
    codec: str
    kv: list[tuple[str, Any, str]]
    tensors: list[PlannedTensor]
    notes: list[str] = field(default_factory=list)  # lossy choices, per tensor
    warnings: list[str] = field(default_factory=list)
    tiles: list[tuple[tuple[int, int], Tiles]] = field(default_factory=list)
    scales: dict[str, Any] = field(default_factory=dict)  # TQ: each projection's scale, read up front
    merged: dict[str, Any] = field(default_factory=dict)  # --allow-scale-merge: the coarser scales written
    alignment: int = DEFAULT_ALIGNMENT  # a repack keeps its source's


def ggml_type(dialect: str, *, name: str | None = None, codec: str | None = None) -> GGMLType:
    """The dialect's type with that name (F32, BF16, ...) or for that ternary codec."""
    for t in types(dialect).values():
        if (name is not None and t.name == name) or (codec is not None and t.codec == codec):
            return t
    raise BitpackError(f"the {dialect} dialect has no type {name or codec}")


def choose_dialect(model: Model, codec: str, dialect: str | None) -> str:
    return pick_dialect(codec, model.arch.name, model.arch.dialects, dialect)


def pick_dialect(codec: str, arch: str, runs_arch: tuple[str, ...] | None, dialect: str | None,
                 prefer: tuple[str, ...] = ()) -> str:
    """The target dialect (gguf.md §3, §4.1): the one asked for, checked (known, written by
    bitpack, has the codec, runs the graph), else the codec's first dialect that runs the graph
    -- ``prefer``red ones first. ``runs_arch`` None: a graph bitpack does not know, any will do."""
    runs_codec = codec_dialects(codec)
    if dialect is None:
        runs = [d for d in runs_codec if runs_arch is None or d in runs_arch]
        if not runs:
            fitting = [c.name for c in gguf_codecs() if set(c.type_ids) & set(runs_arch or ())]
            raise BitpackError(f"no runtime executes a {arch} model stored as {codec}; "
                               f"choose one of {', '.join(fitting)}")
        return next((d for d in runs if d in prefer), runs[0])
    if dialect not in DIALECTS:
        raise BitpackError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    if not DIALECTS[dialect].writable:
        raise BitpackError(f"bitpack reads {dialect} files but never writes them: their id 42 means group-128 "
                           "Q2_0 only to Prism's releases up to prism-v5; write pq2_0 (id 142, --dialect prism) "
                           "or q2_0 instead (formats-2026.md §9.4)")
    if dialect not in runs_codec:
        raise BitpackError(f"the {dialect} runtime has no {codec} type (it runs {', '.join(c.name for c in gguf_codecs() if dialect in c.type_ids)})")
    if runs_arch is not None and dialect not in runs_arch:
        raise BitpackError(f"the {dialect} runtime does not implement the {arch} graph "
                           f"(it would compute a different model; runs it: {', '.join(runs_arch)})")
    return dialect


def plan_gguf(model: Model, codec_name: str, *, dialect: str | None = None,
              params: dict[str, Any] | None = None, embed_dtype: str | None = None,
              allow_scale_rounding: bool = False, allow_scale_merge: bool = False,
              source_info: dict[str, Any] | None = None, name: str | None = None) -> GGUFPlan:
    require_ternary(model, codec_name)
    codec0 = get_codec(codec_name, **(params or {}))
    if not isinstance(codec0, GGUFCodec):
        raise BitpackError(f"{codec_name} is a safetensors layout; write it as a model directory")
    dialect = choose_dialect(model, codec0.name, dialect)
    if embed_dtype is not None and embed_dtype not in EMBED_DTYPES:
        raise BitpackError(f"--embed-dtype must be one of {', '.join(EMBED_DTYPES)}")

    codecs = fit_codec(model.coded, codec0)  # every shape, all offenders at once
    plan = GGUFPlan(dialect, codec0.name, [], [], warnings=list(model.warnings))
    if codec0.codes_restricted:
        _check_codes(model, codec0)
    scale_modes = _plan_scales(model, codec0, allow_scale_rounding, allow_scale_merge, plan)
    _plan_tensors(model, plan, codecs, scale_modes, embed_dtype, allow_scale_rounding)
    plan.kv = _plan_kv(model, plan, name, source_info)
    return plan


def _plan_scales(model: Model, codec0: GGUFCodec, allow_rounding: bool, allow_merge: bool,
                 plan: GGUFPlan) -> dict[str, str]:
    """Every projection's scale checked against what the codec can hold, and TQ's scale mode per
    tensor. A per-tensor target of per-tensor sources needs no pass (GGUF sources decode for it)."""
    if codec0.scale_granularity != "tensor" or model.arch.weight_only or any(_block_scaled(e.stored) for e in model.coded):
        return _scale_modes(model, codec0, allow_rounding, allow_merge, plan)
    return {}


def _plan_tensors(model: Model, plan: GGUFPlan, codecs: dict[str, Any], scale_modes: dict[str, str],
                  embed_dtype: str | None, allow_scale_rounding: bool) -> None:
    """The tensor table, in the model's order: each entry's type, size and producer of its bytes."""
    dialect = plan.dialect
    order = {}
    if model.arch.permute_qk:
        hp = model.hparams
        order = {e.name: qk_row_order(e.name, e.shape[0], hp.n_heads, hp.n_kv_heads, to_gguf=True)
                 for e in model.ternary}
    for e in model.entries:
        if e.coded:
            if e.kind is not Kind.TERNARY and embed_dtype is not None:
                raise BitpackError(f"--embed-dtype applies to float embeddings; {e.name} is ternary and is written "
                                   f"as {codecs[e.name].name}, exactly")
            codec = codecs[e.name]
            if scale_modes.get(e.name) == "separate":
                codec = get_codec(codec.name, scale_mode="separate")
            t = ggml_type(dialect, codec=codec.name)
            merged, rows = plan.merged.get(e.name), order.get(e.name)
            plan.tensors.append(PlannedTensor(
                e.name, e.shape, t.name, t.id, codec.nbytes(e.shape),
                _ternary_producer(e, codec, rows, allow_scale_rounding, merged),
                codec.get_config(),
                codec.bits_per_weight(e.shape), e.release,
                None if rows is not None else _ternary_parts(e, codec, allow_scale_rounding, merged)))
            if codec.tiled:
                plan.tiles.append((e.shape, codec.tiles(e.shape)))
            if scale_modes.get(e.name) == "separate":
                f32 = ggml_type(dialect, name="F32")
                plan.tensors.append(PlannedTensor(e.name.removesuffix(".weight") + ".scale", (1,), f32.name, f32.id, 4,
                                                  lambda s=plan.scales[e.name]: np.array([s], dtype="<f4")))
        else:
            t = ggml_type(dialect, name=_float_dtype(e, embed_dtype, plan))
            plan.tensors.append(PlannedTensor(e.name, e.shape, t.name, t.id, t.nbytes(e.shape),
                                              lambda e=e, d=t.name: stored_as(e.load(), d), done=e.release,
                                              parts=_float_parts(e, t.name)))


def _plan_kv(model: Model, plan: GGUFPlan, name: str | None,
             source_info: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """The file's metadata: general.*, the hyperparameters, the tokenizer, then bitpack.*."""
    arch = model.arch.name
    return [
        ("general.architecture", arch, "string"),
        ("general.name", name or model.name, "string"),
        ("general.file_type", file_type(plan.dialect, plan.codec), "u32"),
        ("general.quantization_version", 2, "u32"),
        *model.hparams.gguf_kv(arch, explicit_head_dim=model.arch.weight_only),
        *gguf_tokenizer_kv(model, plan.warnings),
        ("bitpack.format_version", 1, "u32"),
        ("bitpack.dialect", plan.dialect, "string"),
        ("bitpack.codec", plan.codec, "string"),
        ("bitpack.codec_params", json.dumps(codec_params(plan), sort_keys=True), "string"),
        ("bitpack.source", json.dumps(source_info or {"name": Path(model.source).name}, sort_keys=True), "string"),
        ("bitpack.version", __version__, "string"),
    ]


def codec_params(plan: GGUFPlan) -> dict[str, Any]:
    """bitpack.codec_params: each ternary tensor's codec parameters beyond its id (TL tiles,
    I2_S's layout), which nothing in the bytes tells a reader."""
    return {t.name: {k: v for k, v in t.codec.items() if k != "id"} for t in plan.tensors
            if t.codec and len(t.codec) > 1}


def _scale_modes(model: Model, codec: GGUFCodec, allow_rounding: bool, allow_merge: bool,
                 plan: GGUFPlan) -> dict[str, str]:
    """How a codec with row or group scales stores each projection's scale (formats-2026.md
    §7.3): in its own scales where they hold it exactly; else, for a codec that can (TQ) under
    a graph that reads them (bitnet), in separate exact F32 .scale tensors (gguf.md §6.1); else
    refused -- or, with allow_rounding, a per-tensor scale rounded to the codec's dtype and
    listed. A source with several scales per tensor is checked group by group, before writing."""
    modes, lossy = {}, []
    plan.scales = read_scales(model.coded)
    for e in model.coded:
        scale, modes[e.name] = plan.scales[e.name], "baked"
        if np.ndim(scale):  # the codec's groups must each hold one of the source's values
            try:
                codes = e.load().codes
                to_codec_scales(scale, codes, codec.scale_granularity, codec.group_size,
                                codec.scale_dtype, codec.name)
            except ScaleError as err:
                if not allow_merge:
                    raise BitpackError(f"{e.name}: {err}; {_exact_targets(model, e)}, "
                                       "or --allow-scale-merge to merge scales (lossy)") from None
                plan.merged[e.name], error, ratio = merge_scales(scale, codes, codec.scale_granularity,
                                                                 codec.group_size, codec.scale_dtype)
                plan.notes.append(f"{e.name}: scales merged to one per {unit(codec.scale_granularity, codec.group_size)} (--allow-scale-merge): "
                                  f"relative weight error {error:.2e}, largest merged scale ratio {ratio:.3g}")
            finally:
                e.release()
            continue
        rounded = np.float32(round_to(scale, codec.scale_dtype))
        if rounded == scale:
            continue
        if codec.separate_scale and model.arch.separate_scales:
            modes[e.name] = "separate"
        else:
            lossy.append((e.name, float(scale), float(rounded)))
    if lossy and not allow_rounding:
        listing = "; ".join(f"{n} {s!r} -> {r!r}" for n, s, r in lossy[:6])
        reads = "" if not codec.separate_scale else f" and the {model.arch.name} graph reads no separate scale tensor"
        raise BitpackError(
            f"{codec.name} stores {codec.scale_dtype} scales{reads}, so {len(lossy)} scales would be rounded: {listing}"
            + (f"; and {len(lossy) - 6} more" if len(lossy) > 6 else "")
            + ". Pass --allow-scale-rounding to accept, or choose i2_s (exact f32 scales)")
    for n, s, r in lossy:
        plan.notes.append(f"{n}: scale {s!r} rounded to {codec.scale_dtype} {r!r} "
                          f"(relative change {abs(r - s) / abs(s):.2e})")
    return modes


def _check_codes(model: Model, codec: GGUFCodec) -> None:
    """Every projection's codes must fit a codec that cannot hold all ternary codes (q1_0 is
    binary): decoded once each, all offenders listed, before anything is written."""
    refused = []
    for e in model.coded:
        try:
            codec.check_codes(e.load().codes)
        except CodecError as err:
            refused.append(f"{e.name}: {str(err).removeprefix(codec.name + ' ')}")
        finally:
            e.release()
    if refused:
        raise BitpackError(f"{codec.name} cannot hold the codes of {len(refused)} of {len(model.coded)} "
                           f"ternary tensors: {'; '.join(refused[:3])}" + (f"; and {len(refused) - 3} more" if
                                                                      len(refused) > 3 else ""))


def _exact_targets(model: Model, e: Entry) -> str:
    """Which GGUF codecs hold this tensor's scales exactly: those whose groups are no coarser."""
    t = e.load()
    exact = []
    for cls in gguf_codecs():
        try:
            if cls.scale_granularity == "tensor":
                continue
            to_codec_scales(t.scale, t.codes, cls.scale_granularity, cls.group_size, cls.scale_dtype, cls.name)
            exact.append(cls.name)
        except (ScaleError, CodecError):
            continue
    e.release()
    return f"targets that hold it exactly: {', '.join(exact)}" if exact else "no GGUF codec holds it exactly"


def _block_scaled(stored: str) -> bool:
    """Does a source stored as ``stored`` (a codec name, or a float dtype) keep more than one scale?"""
    return stored in list_codecs() and codec_class(stored).scale_granularity != "tensor"


def _ternary_producer(e: Entry, codec, rows, allow_rounding: bool, merged: Any = None):
    def produce() -> np.ndarray:
        t = e.load()
        scale = t.scale if merged is None else merged  # merged: the coarser scales planned, listed in notes
        codes = t.codes
        if rows is not None:  # llama: q/k rows for NORM RoPE; per-row or per-group scales move with them
            codes = codes[rows]
            scale = scale[rows] if np.ndim(scale) else scale
        return _encoded(codec, codes, scale, allow_rounding)

    return produce


def _encoded(codec, codes: np.ndarray, scale: Any, allow_rounding: bool) -> np.ndarray:
    """Codes and their scale in ``codec``, as the plan stores the scale."""
    if codec.params.get("scale_mode") == "separate":
        scale = np.float32(1)  # the exact scale is the companion .scale tensor
    elif np.ndim(scale) == 0 and allow_rounding:
        scale = np.float32(round_to(scale, codec.scale_dtype))  # listed in plan.notes
    return codec.encode(codes, scale)


def _ternary_parts(e: Entry, codec, allow_rounding: bool, merged: Any) -> list[Callable[[], np.ndarray]] | None:
    """A projection whose source ternarizes a block of rows alone (masters, given their scale)
    and whose target's rows are byte ranges (TQ, the group codecs; I2_S, before its trailer),
    a block of rows at a time: the codes stay in the CPU cache and both cores share a large tensor."""
    row = codec.body_row_bytes(e.shape[1])
    if e.load_rows is None or e.release_rows is None or row is None:
        return None
    spans = row_spans(*e.shape)
    return [functools.partial(_ternary_rows, e, codec, allow_rounding, merged, row, lo, hi)
            for lo, hi in spans or ()] or None


def _ternary_rows(e: Entry, codec, allow_rounding: bool, merged: Any, row: int, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi-1 in the target codec; the last block keeps the per-tensor trailer, if any."""
    try:
        t = e.load_rows(lo, hi)
        scale = t.scale if merged is None else merged[lo:hi] if np.ndim(merged) else merged
        out = _encoded(codec, t.codes, scale, allow_rounding)
    except BitpackError as err:
        raise type(err)(f"{e.name}, rows {lo}-{hi - 1}: {err}") from None
    e.release_rows(lo, hi)  # read once: the resident source stays a few blocks, not the tensor
    return out if hi == e.shape[0] else out[: (hi - lo) * row]


def _float_parts(e: Entry, dtype: str) -> list[Callable[[], np.ndarray]] | None:
    """A large float tensor (the embedding) from a source that drops pages by rows, a block of
    rows at a time: resident memory stays a few blocks, not the tensor (657 MB in 2B-4T)."""
    spans = row_spans(*e.shape) if len(e.shape) == 2 and e.release_rows is not None else None
    return [functools.partial(_float_rows, e, dtype, lo, hi) for lo, hi in spans] if spans else None


def _float_rows(e: Entry, dtype: str, lo: int, hi: int) -> np.ndarray:
    value = e.load()
    block = value.raw[lo:hi]
    out = stored_as(Float(block, value.stored), dtype)
    if out is block:  # the source's own bytes: copied, so its pages can go before the writer reads them
        out = block.copy()
    e.release_rows(lo, hi)
    return out


def _float_dtype(e: Entry, embed_dtype: str | None, plan: GGUFPlan) -> str:
    if e.kind is Kind.NORM:
        return "F32"  # every norm is F32 in GGUF (gguf.md §6); bf16/f16 -> f32 is exact
    value = e.load()
    assert isinstance(value, Float)
    if embed_dtype is not None:
        dtype = embed_dtype.upper()
        changed = rounded_count(value, dtype)
        if changed:
            plan.notes.append(f"{e.name}: stored as {dtype} as requested; {changed} of {value.raw.size} values rounded")
        return dtype
    # exact by default: F16 (what the official files use) when every value fits, else BF16, else F32
    return next(d for d in ("F16", "BF16", "F32") if d == value.stored or exact_in(value, d))


def gguf_tokenizer_kv(model: Model, warnings: list[str]) -> list[tuple[str, Any, str]]:
    """The tokenizer.* keys of any GGUF bitpack writes: from the source's HF tokenizer files,
    else carried from a GGUF source; what is missing or guessed goes to ``warnings``."""
    if model.tokenizer_dir is not None:
        kv, found = tokenizer_kv(model.tokenizer_dir, model.hparams.vocab_size)
        warnings.extend(found)
        return kv
    if model.tokenizer_kv:
        return [(k, v, t) for k, (v, t) in model.tokenizer_kv.items()]
    warnings.append("the source has no tokenizer; the GGUF carries none (runtimes need one to run it)")
    return []


def write_gguf(plan: GGUFPlan, out: Path, *, overwrite: bool, inputs: list[Path],
               progress: Callable[[str, int], None] | None = None, digest: bool = False) -> tuple[int, str | None]:
    """Write ``plan`` to ``out`` (header and tensor table first, then tensor by tensor);
    returns the file size and, given ``digest``, its sha256 (for the receipt)."""
    check_output_file(out, overwrite=overwrite, inputs=inputs)
    with GGUFWriter(out, alignment=plan.alignment, digest=digest) as writer:
        for key, value, kind in plan.kv:
            writer.add_kv(key, value, value_type(kind))
        for t in plan.tensors:
            writer.add_tensor(t.name, t.shape, t.type_id, t.nbytes)
        writer.write_header()
        write_in_order(plan.tensors, writer.write_tensor, progress, writer.write_part)
    return out.stat().st_size, writer.sha256  # leaving the block closed the writer: fsync, rename into place
