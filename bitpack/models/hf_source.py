"""Read a Hugging Face checkpoint (directory, index or single file) into the canonical model.

Three published ternary layouts plus bitpack's own (spec/checkpoints.md §1):
master weights (ternarized here with absmean), packed uint8 + ``weight_scale`` under
``autobitlinear`` (multiply) or ``bitlinear`` (divide), and bitpack's ``int8`` /
``i2_packed`` (``__metadata__["bitpack.codec"]``). The scale convention is resolved here,
once, into the multiply form.

Float projections are BitNet master weights only when something says the model is BitNet:
a BitNet architecture (sub-norms), a ``quantization_config``, or a BitNet marker in
config.json (``is_bitnet_config``, ``weight_bits``/``input_bits``, a Bitnet class name).
An ordinary Llama/Mistral-shaped checkpoint is a full-precision model (layout "float",
``Model.precision == "float"``): its projections load as ``Float``, stored dtype kept, and
are never ternarized.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs import codec_class, get_codec
from ..containers.hf_dir import read_config, tokenizer_files
from ..containers.safetensors_read import Checkpoint
from ..errors import BitpackError
from ..jsonsafe import load_file
from .arch import (
    ARCHITECTURES,
    Architecture,
    Kind,
    architecture,
    decide,
    layer_count,
    slots,
    unknown_hf_names,
)
from .conventions import CONVENTIONS, DEFAULT, LINEAR_CLASSES, OWN
from .grid import read_grids
from .hf_layout import FLOAT_DTYPES, checkpoint_layout
from .hparams import HParams
from .model import Entry, Float, Model, Ternary
from .ternarize import FORMATS, absmean_scale, absmean_stored
from .tokenizer import check_tokenizer


def config_dir(path: Path) -> Path:
    """The folder holding config.json for a directory, index or .safetensors path."""
    if path.name == "config.json" and path.is_file():  # else it is read as a shard index
        raise BitpackError(f"{path} is the model's config.json, not its weights; SRC is the model directory "
                           f"({path.parent}), a .safetensors file with config.json beside it, or a .gguf file")
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        raise BitpackError(f"{path}: no config.json {'in' if path.is_dir() else 'beside'} it; "
                           "bitpack needs the model's config.json to know its architecture")
    return folder


def hf_architecture(hp: HParams, names: Iterable[str], where: str, config: dict[str, Any] | None = None,
                    override: str | None = None) -> Architecture:
    """The graph of an HF checkpoint: the one the user names, else its hidden_act and whether it
    has sub-norms (by tensor name) -- once config.json's ``architectures`` and ``model_type``
    name only models bitpack has a table for."""
    if override is not None:
        try:
            return architecture(override)
        except KeyError:
            raise BitpackError(f"architecture {override!r} is not one bitpack knows "
                               f"({', '.join(ARCHITECTURES)})") from None
    unknown = unknown_hf_names(config or {})
    if unknown:
        raise BitpackError(f"{where}: config.json names {' and '.join(unknown)}, an architecture bitpack has no "
                           f"table for; name the graph to read it as ({', '.join(ARCHITECTURES)}) if it is one of them")
    has_sub = any(".attn_sub_norm." in n or ".inner_attn_ln." in n for n in names)
    arch = decide(hp.hidden_act, has_sub, (config or {}).get("model_type"))
    if arch is None:
        raise BitpackError(
            f"{where}: unsupported architecture (hidden_act {hp.hidden_act!r}, "
            f"{'with' if has_sub else 'without'} sub-norms); bitpack reads BitNet b1.58 2B-4T, "
            "1bitLLM and Llama-shaped ternary checkpoints"
        )
    return arch


def open_hf(path: Path, scale_convention: str | None = None, architecture: str | None = None) -> Model:
    """The canonical model of an HF checkpoint, every config field, tensor shape and dtype and
    the tokenizer files checked before any tensor is read. ``architecture`` names the graph
    (a key of ``arch.ARCHITECTURES``) for a config.json whose own names bitpack does not know."""
    folder = config_dir(path)
    load_file(folder / "config.json")  # bounded nesting before the container's parser sees it
    config, duplicates = read_config(folder)
    warnings = [w.message for w in duplicates] + _duplicate_linear_class(folder, duplicates, scale_convention)
    ckpt = Checkpoint(path)
    where = str(path)
    hp = HParams.from_config(config, where)
    names = set(ckpt.names())
    arch = hf_architecture(hp, names, where, config, architecture)
    _refuse_biases(config, where)
    backed = layer_count(names)
    if hp.n_layers > backed:
        raise BitpackError(f"{where}: config.json num_hidden_layers is {hp.n_layers} but the checkpoint holds "
                           f"tensors for {backed} layer{'s' if backed != 1 else ''}")
    layout, linear_class, codec_name = checkpoint_layout(config, ckpt, where, scale_convention, arch.name)
    if scale_convention is not None and layout == "packed":
        linear_class = CONVENTIONS[scale_convention]
    read = _Reading(ckpt, names, where, hp, layout, linear_class, codec_name)
    entries = [entry for canonical, slot, layer in slots(arch, hp.n_layers, hp.tied)
               if (entry := read.entry(canonical, slot, layer)) is not None]
    warnings += _leftovers(read, hp)
    _check_shapes(entries, hp, where)
    tokenizer_dir = folder if tokenizer_files(folder) else None
    if tokenizer_dir is not None:
        check_tokenizer(tokenizer_dir, hp.vocab_size)
    # a weight-only model's floats on their grid (an -unpacked checkpoint; a table in bitpack's layouts)
    float_reason = read_grids(entries, arch, where) if layout in ("float", "bitpack") else None
    if layout == "float" and arch.weight_only and float_reason is None:
        layout = "unpacked"  # every projection on a ternary grid: a ternary model stored as floats
    return Model(
        source=str(path), container="safetensors",
        layout=_layout_label(layout, linear_class, codec_name, entries),
        arch=arch, hparams=hp, entries=entries, files=_input_files(ckpt, folder),
        config=config, tokenizer_dir=tokenizer_dir,
        linear_class=linear_class, warnings=warnings,
        source_scale_dtype=_scale_dtype(ckpt, entries) if layout == "packed" else None,
        precision="float" if layout == "float" else "ternary", float_reason=float_reason,
    )


def _duplicate_linear_class(folder: Path, duplicates: list, scale_convention: str | None) -> list[str]:
    """A config.json that names quantization_config twice with different linear classes is read
    as transformers reads it -- the last key wins, a missing linear_class is its default
    (bitlinear: divide) -- and said so, not silently."""
    out = []
    for dup in duplicates:
        if dup.path != "quantization_config" or not dup.differ or scale_convention is not None:
            continue
        linear = [v.get("linear_class", DEFAULT) if isinstance(v, dict) else v for v in dup.values]
        linear = [v if isinstance(v, str) else repr(v)[:40] for v in linear]
        if len(set(map(str, linear))) > 1:
            convention = getattr(LINEAR_CLASSES.get(str(linear[-1])), "convention", "?")
            out.append(
                f"{folder}/config.json has quantization_config {len(dup.values)} times with different "
                f"linear_class ({', '.join(map(str, linear))}); read as transformers reads it, the last one "
                f"wins: {linear[-1]} ({convention} weight_scale). "
                "Pass --scale-convention multiply or divide if the weights were made for the other")
    return out


@dataclass
class _Reading:
    """Turning a checkpoint's tensors into entries, one slot at a time, remembering what was used
    and what was missing (all of it reported at once)."""

    ckpt: Any
    names: set[str]
    where: str
    hp: HParams
    layout: str
    linear_class: str | None
    codec_name: str | None
    used: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)

    def entry(self, canonical: str, slot: Any, layer: int | None) -> Entry | None:
        found = next((n.format(i=layer) for n in slot.hf if n.format(i=layer) in self.names), None)
        if found is None:
            self.missing.append(slot.hf[0].format(i=layer))
            return None
        self.used.add(found)
        if slot.kind is Kind.TERNARY and self.layout == "float":
            return self._float_projection(canonical, slot, found)
        if slot.kind is Kind.TERNARY:
            return self._ternary(canonical, slot, found)
        info = self.ckpt.info(found)
        if info.dtype not in FLOAT_DTYPES:
            raise BitpackError(f"{self.where}: {found} is {info.dtype}; expected a float tensor")
        return Entry(canonical, slot.kind, tuple(info.shape), info.dtype, _float_loader(self.ckpt, found),
                     source_name=found, release=lambda n=found: self.ckpt.release(n),
                     release_rows=_row_release(self.ckpt, found))

    def _float_projection(self, canonical: str, slot: Any, found: str) -> Entry:
        shape = self.hp.ternary_shape(canonical)
        info = self.ckpt.info(found)
        if tuple(info.shape) != shape:
            raise BitpackError(f"{self.where}: {found} has shape {list(info.shape)}; config.json implies {list(shape)}")
        return Entry(canonical, slot.kind, shape, info.dtype, _float_loader(self.ckpt, found),
                     source_name=found, release=lambda n=found: self.ckpt.release(n))

    def _ternary(self, canonical: str, slot: Any, found: str) -> Entry | None:
        ckpt, layout, codec_name = self.ckpt, self.layout, self.codec_name
        shape = self.hp.ternary_shape(canonical)
        scale_name = found + "_scale"
        _check_projection(ckpt, found, shape, layout, codec_name, self.where)
        if layout != "master":
            if scale_name not in self.names:
                self.missing.append(scale_name)
                return None
            self.used.add(scale_name)
            _check_scale(ckpt, scale_name, shape, codec_name, self.where)
        memo: dict = {}  # a master's mean|W|, computed once for its scale and codes
        master = layout == "master"
        return Entry(canonical, slot.kind, shape, codec_name or ckpt.info(found).dtype,
                     _ternary_loader(ckpt, found, scale_name, shape, layout, self.linear_class, codec_name,
                                     self.where, memo),
                     source_name=found, scale=_scale_reader(ckpt, found, scale_name, layout, self.linear_class, memo),
                     release=lambda n=found: ckpt.release(n),
                     load_rows=_master_rows(ckpt, found, memo) if master else None,
                     release_rows=_row_release(ckpt, found) if master else None,
                     source_scale=None if layout == "master" else (lambda n=scale_name: ckpt.raw(n).copy()),
                     all_zero=None if layout == "master" else (
                         lambda n=found, s=shape: get_codec(codec_name).all_zero(ckpt.raw(n), s)))


def _leftovers(read: _Reading, hp: HParams) -> list[str]:
    """Refuse missing tensors and tensors bitpack does not know where to put (all named); a tied
    model's lm_head equal to its embedding is dropped, and said so."""
    where = read.where
    if read.missing:
        raise BitpackError(f"{where}: missing tensors: {', '.join(read.missing[:8])}"
                           + (f" and {len(read.missing) - 8} more" if len(read.missing) > 8 else ""))
    extra = sorted(read.names - read.used)
    warnings = []
    if hp.tied and "lm_head.weight" in extra:
        _check_tied_head(read.ckpt, where)
        extra.remove("lm_head.weight")
        warnings.append("tied model carries an lm_head.weight equal to the embedding; it was dropped")
    if extra:
        raise BitpackError(f"{where}: tensors bitpack does not know where to put: {', '.join(extra[:8])}"
                           + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
    return warnings


def _refuse_biases(config: dict[str, Any], where: str) -> None:
    """Projection biases (attention_bias / mlp_bias) have no place in the canonical model, and
    sliding-window attention is not in llama.cpp's qwen3 graph (qwen3.md §1.1)."""
    biased = [key for key in ("attention_bias", "mlp_bias", "use_sliding_window") if config.get(key) not in (None, False)]
    if biased:
        raise BitpackError(f"{where}: config.json sets {' and '.join(biased)} true; bitpack does not support "
                           "projection biases or sliding-window attention")


def _check_projection(ckpt, name: str, shape: tuple[int, int], layout: str, codec_name: str | None,
                      where: str) -> None:
    """A projection's stored dtype and shape against its layout and the hyper-parameters, before
    any work (a master of the wrong shape or dtype would otherwise fail mid-way)."""
    info = ckpt.info(name)
    if layout == "master":
        if info.dtype not in FORMATS:
            raise BitpackError(f"{where}: {name} is {info.dtype}; master weights must be "
                               f"{', '.join(FORMATS)} (like the checkpoint's other projections)")
        if tuple(info.shape) != tuple(shape):
            raise BitpackError(f"{where}: {name} has shape {list(info.shape)}; config.json implies {list(shape)}")
        return
    codec = get_codec(codec_name)
    want = codec.stored_shape(shape)
    if info.dtype != _ST_NAMES.get(np.dtype(codec.stored_dtype).str, info.dtype):
        raise BitpackError(f"{where}: {name} is {info.dtype}; {codec_name} stores {np.dtype(codec.stored_dtype).name}")
    if tuple(info.shape) != tuple(want):
        raise BitpackError(f"{where}: {name} has shape {list(info.shape)}; {codec_name} of a "
                           f"{shape[0]}x{shape[1]} weight (from config.json) is {list(want)}")


_ST_NAMES = {"|u1": "U8", "|i1": "I8"}


def _check_scale(ckpt, name: str, shape: tuple[int, int], codec_name: str, where: str) -> None:
    """A packed projection's weight_scale: one float value; bitpack's own layouts may also hold
    one per row or per group of K/n weights, an F32 (M, n) tensor."""
    info = ckpt.info(name)
    if info.dtype in FLOAT_DTYPES and int(np.prod(info.shape)) == 1:
        return
    m, k = shape
    grouped = (codec_class(codec_name).any_scale and info.dtype == "F32" and len(info.shape) == 2
               and info.shape[0] == m and 0 < info.shape[1] <= k and k % info.shape[1] == 0)
    if not grouped:
        raise BitpackError(f"{where}: {name} is {info.dtype} {list(info.shape)}; expected one float value "
                           "(F32, F16 or BF16, shape [1] or [])"
                           + (f", or F32 [{m}, K/g] per row or group" if codec_class(codec_name).any_scale else ""))


def _ternary_loader(ckpt, name, scale_name, shape, layout, linear_class, codec_name, where, memo=None):
    def load() -> Ternary:
        if layout == "master":
            stored = ckpt.info(name).dtype
            if stored == "F64":
                raise BitpackError(f"{where}: {name} is F64; bitpack ternarizes F32, F16 and BF16 masters")
            t = absmean_stored(ckpt.raw(name), stored, memo=memo)
            return Ternary(t.codes.reshape(shape), t.scale, borderline=t.borderline)
        stored = ckpt.info(name)
        codec = get_codec(codec_name)
        want = codec.stored_shape(shape)
        if tuple(stored.shape) != tuple(want):
            raise BitpackError(f"{where}: {name} has shape {list(stored.shape)}; {codec_name} of a "
                               f"{shape[0]}x{shape[1]} weight is {list(want)}")
        codes, _ = codec.decode(ckpt.raw(name), shape)
        ws = ckpt.array(scale_name, dtype=np.float32)
        if ws.ndim == 2 and ws.size > 1:  # per row or group (checked by _check_scale)
            if not np.isfinite(ws).all() or (ws < 0).any():
                raise BitpackError(f"{where}: {scale_name} holds a negative or non-finite scale")
            return Ternary(codes, ws + np.float32(0))  # -0 -> +0
        ws = ws.reshape(-1)
        if ws.size != 1 or not np.isfinite(ws[0]) or ws[0] == 0:
            raise BitpackError(f"{where}: {scale_name} must be one finite non-zero value; got {ws[:4]}")
        convention = LINEAR_CLASSES.get(linear_class, OWN)
        if convention.convention == "divide":  # keep the stored bits: 1/(1/s) need not give them back
            return Ternary(codes, convention.scale(ws[0]), source_weight_scale=ckpt.raw(scale_name).copy())
        return Ternary(codes, convention.scale(ws[0]))

    return load


def _scale_dtype(ckpt, entries: list[Entry]) -> str | None:
    dtypes = {ckpt.info(e.source_name + "_scale").dtype for e in entries if e.kind is Kind.TERNARY}
    return dtypes.pop() if len(dtypes) == 1 else None


def _scale_reader(ckpt, name, scale_name, layout, linear_class, memo=None):
    """The canonical scale without unpacking codes: one pass over masters, one value otherwise."""
    def scale() -> np.float32:
        if layout == "master":
            return absmean_scale(ckpt.raw(name), ckpt.info(name).dtype, memo)
        ws = ckpt.array(scale_name, dtype=np.float32)
        if ws.ndim == 2 and ws.size > 1:  # per row or group: bitpack's own layouts store s itself
            return ws + np.float32(0)
        return LINEAR_CLASSES.get(linear_class, OWN).scale(np.float32(ws.reshape(-1)[0]))

    return scale


def _master_rows(ckpt, name, memo):
    """Rows lo:hi of a master projection, ternarized with the whole tensor's scale: mean|W| is a
    pass over every row, made once (convert() has made it already, in the degenerate-weight
    check; else the first block to ask makes it and blocks converted beside it wait), then each
    block's codes are computed alone -- the same codes as the whole tensor's."""
    lock = threading.Lock()

    def load_rows(lo: int, hi: int) -> Ternary:
        raw, stored = ckpt.raw(name), ckpt.info(name).dtype
        with lock:
            if "mean" not in memo:
                absmean_scale(raw, stored, memo)
        t = absmean_stored(raw[lo:hi], stored, memo=memo)
        return Ternary(t.codes, t.scale)

    return load_rows


def _row_release(ckpt, name):
    """Drop the pages of rows lo:hi of a stored 2-D tensor; None for other shapes (whole only)."""
    info = ckpt.info(name)
    if len(info.shape) != 2 or not info.shape[0]:
        return None
    row = info.nbytes // info.shape[0]
    return lambda lo, hi: ckpt.release(name, lo * row, hi * row)


def _float_loader(ckpt, name):
    def load() -> Float:
        stored = ckpt.info(name).dtype
        raw = ckpt.raw(name)
        if stored == "F64":  # float32 cannot hold every float64: refuse rather than round
            raise BitpackError(f"{name} is F64; bitpack carries F32, F16 and BF16 tensors exactly")
        return Float(raw, stored)

    return load


def _check_tied_head(ckpt, where: str) -> None:
    head = ckpt.array("lm_head.weight", dtype=np.float32)
    embed = ckpt.array("model.embed_tokens.weight", dtype=np.float32)
    if head.shape != embed.shape or not np.array_equal(head, embed):
        raise BitpackError(f"{where}: tie_word_embeddings is true but lm_head.weight differs from the embedding")


def _check_shapes(entries: list[Entry], hp: HParams, where: str) -> None:
    bad = []
    for e in entries:
        if e.kind is not Kind.TERNARY and not hp.float_shape_fits(e.name, tuple(e.shape)):
            bad.append(f"{e.source_name} {list(e.shape)} (expected {list(hp.float_shape(e.name))})")
    if bad:
        raise BitpackError(f"{where}: tensor shapes disagree with config.json: {'; '.join(bad[:6])}")


def _layout_label(layout: str, linear_class: str | None, codec: str | None, entries: list[Entry]) -> str:
    if layout in ("master", "float", "unpacked"):
        dtypes = "/".join(sorted({e.stored for e in entries if e.kind is Kind.TERNARY}))
        return {"master": "master weights", "float": "full precision", "unpacked": "unpacked ternary"}[layout] + f" ({dtypes})"
    if layout == "packed":
        return f"hf_packed ({linear_class})"
    return f"bitpack {codec}"


def _input_files(ckpt: Checkpoint, folder: Path) -> list[Path]:
    """Every file a conversion reads: shards, their index, config.json, tokenizer files."""
    index = [ckpt.index_path] if ckpt.index_path else []
    return [*ckpt.files, *index, folder / "config.json", *tokenizer_files(folder)]
