"""Write a canonical model as an HF model directory in a safetensors layout.

``hf_packed`` directories load in transformers (quant_method ``bitnet``); ``int8`` and
``i2_packed`` are bitpack's own lossless layouts (spec/checkpoints.md §3.3, §7). Scales are
kept exact: ``weight_scale`` is F32 by default; bf16 (as published) or a bitlinear 1/s that
does not invert exactly needs ``allow_scale_rounding`` and is listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._version import __version__
from ..codecs import get_codec
from ..codecs.base import SafetensorsCodec
from ..containers.hf_dir import ModelDirWriter, tokenizer_files
from ..containers.safetensors_read import DTYPES
from ..dtypes import FLOAT_STORAGE
from ..errors import BitpackError
from ..parallel import write_in_order
from .arch import Kind, hf_name
from .conventions import LINEAR_CLASSES, resolve_linear_class
from .floats import as_float, exact_in, round_through, round_to, stored_as
from .gguf_vocab import hf_tokenizer_files
from .model import Float, Model, fit_codec, read_scales, require_ternary, single_scales

SCALE_DTYPES = ("f32", "bf16")
_ST_DTYPE = {dtype: name for name, dtype in DTYPES.items() if name != "BF16"}  # numpy dtype -> safetensors name


@dataclass
class Planned:
    name: str
    dtype: str
    shape: tuple[int, ...]
    produce: Callable[[], np.ndarray]
    codec: str | None = None
    done: Callable[[], None] | None = None  # called once written (drops the source's pages)


@dataclass
class HFPlan:
    codec: str
    config: dict[str, Any]
    metadata: dict[str, str]
    tensors: list[Planned]
    copy: list[Path]
    files: dict[str, bytes] = field(default_factory=dict)  # written, not copied: a GGUF's tokenizer
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_hf(model: Model, codec_name: str, *, scale_dtype: str = "f32", linear_class: str | None = None,
            allow_scale_rounding: bool = False, source_info: dict[str, Any] | None = None) -> HFPlan:
    require_ternary(model, codec_name)
    codec = get_codec(codec_name)
    if not isinstance(codec, SafetensorsCodec):
        raise BitpackError(f"{codec_name} is a GGUF layout; write it as a .gguf file")
    if getattr(codec, "floats", False):
        plan = _plan_unpacked(model, source_info)
        _carry_tokenizer(model, plan)
        return plan
    if scale_dtype not in SCALE_DTYPES:
        raise BitpackError(f"--scale-dtype must be one of {', '.join(SCALE_DTYPES)}")
    fit_codec(model.ternary, codec)
    packed = codec.name == "hf_packed"
    asked = linear_class is not None
    if linear_class is None:
        linear_class = model.linear_class or ("bitlinear" if model.arch.name == "llama" else "autobitlinear")
    linear_class = resolve_linear_class(linear_class, "--linear-class").name

    plan = HFPlan(codec.name, {}, {}, [], [], warnings=list(model.warnings))
    if model.arch.name == "bitnet" and packed:
        plan.warnings.append("transformers' BitNet model has not been verified with hidden_act silu (1bitLLM "
                             "graph); check its output before relying on it")

    def scales_as(linear: str, rounding: bool) -> dict[str, tuple[str, np.ndarray]]:
        return _weight_scales(model, linear if packed else "autobitlinear",
                              _scale_dtype(model, linear, scale_dtype, packed), rounding, plan, codec.any_scale)

    if packed and not asked and linear_class == "bitlinear":
        # the default class must hold every scale exactly: a 1/s that does not invert back
        # (a chained conversion's scales) makes autobitlinear (multiply) the default instead
        try:
            stored_scales = scales_as(linear_class, False)
        except BitpackError:
            linear_class = "autobitlinear"
            stored_scales = scales_as(linear_class, allow_scale_rounding)
    else:
        stored_scales = scales_as(linear_class, allow_scale_rounding)
    plan.config = _config(model, codec.name, linear_class)
    shapes = {}
    for e in model.entries:
        name = hf_name(e.name)
        if e.kind is Kind.TERNARY:
            shapes[name] = list(e.shape)
            plan.tensors.append(Planned(name, _ST_DTYPE[codec.stored_dtype], codec.stored_shape(e.shape),
                                        lambda e=e: _encoded(e.load(), codec), codec.name, e.release))
            dtype, value = stored_scales[e.name]
            plan.tensors.append(Planned(name + "_scale", dtype, value.shape, lambda v=value: v))
        elif e.coded:  # a weight-only model's ternary table: its exact values, read back onto the grid
            dtype = _narrowest(read_scales([e])[e.name])
            plan.tensors.append(Planned(name, dtype, e.shape, lambda e=e, d=dtype: stored_as(as_float(e.load()), d),
                                        done=e.release))
        else:
            dtype = e.stored if e.stored in FLOAT_STORAGE else "F32"
            plan.tensors.append(Planned(name, dtype, e.shape, lambda e=e, d=dtype: stored_as(e.load(), d),
                                        done=e.release))
    plan.metadata = {
        "format": "pt",
        "bitpack.format_version": "1",
        "bitpack.codec": codec.name,
        "bitpack.shapes": json.dumps(shapes, sort_keys=True),
        "bitpack.source": json.dumps(source_info or {"name": Path(model.source).name}, sort_keys=True),
        "bitpack.version": __version__,
    }
    _carry_tokenizer(model, plan)
    return plan


def _carry_tokenizer(model: Model, plan: HFPlan) -> None:
    plan.copy, plan.files = hf_tokenizer(model, plan.warnings)


def hf_tokenizer(model: Model, warnings: list[str]) -> tuple[list[Path], dict[str, bytes]]:
    """(files to copy, files to write) for the tokenizer of an HF directory bitpack writes: the
    source's HF tokenizer files, or a GGUF source's vocabulary rebuilt as HF files; what is
    missing goes to ``warnings``."""
    if model.tokenizer_dir is not None:
        return tokenizer_files(model.tokenizer_dir), {}
    if model.tokenizer_kv:  # a GGUF source: its vocabulary, rebuilt as HF files
        try:
            return [], hf_tokenizer_files(model.tokenizer_kv, str(model.source))
        except BitpackError as err:  # the weights are still worth writing; say what is missing
            warnings.append(f"the output directory has no tokenizer files: {err}")
            return [], {}
    warnings.append("the source carries no HF tokenizer files; the output directory has none "
                    "(copy tokenizer.json / tokenizer.model from the original model)")
    return [], {}


TORCH_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def _plan_unpacked(model: Model, source_info: dict[str, Any] | None) -> HFPlan:
    """An ordinary transformers checkpoint of a weight-only model (qwen3.md §8.3): every ternary
    tensor as its values s x t, every tensor in one float dtype -- the narrowest that holds every
    value exactly -- so that transformers, casting to torch_dtype on load, changes nothing."""
    if not model.arch.weight_only:
        raise BitpackError(f"unpacked writes weight-only models (qwen3); a {model.arch.name} runtime re-ternarizes "
                           "float weights online with its own absmean, which need not give these codes back. "
                           "Write hf_packed (transformers' BitNet layout) instead")
    scales = read_scales(model.coded)
    dtype = next(d for d in NARROWEST_FIRST if _holds(model, scales, d))
    codec = get_codec("unpacked", dtype=dtype.lower())
    fit_codec(model.coded, codec)
    plan = HFPlan(codec.name, {}, {}, [], [], warnings=list(model.warnings))
    for e in model.entries:
        produce = (lambda e=e: codec.encode(*_loaded(e)).view(codec.stored_dtype).reshape(e.shape)) if e.coded \
            else (lambda e=e: stored_as(e.load(), dtype))
        plan.tensors.append(Planned(hf_name(e.name), dtype, e.shape, produce, done=e.release))  # plain floats
    plan.config = hf_config(model, TORCH_DTYPES[dtype])
    plan.metadata = {"format": "pt", "bitpack.format_version": "1", "bitpack.codec": codec.name,
                     "bitpack.source": json.dumps(source_info or {"name": Path(model.source).name}, sort_keys=True),
                     "bitpack.version": __version__}
    return plan


NARROWEST_FIRST = ("F16", "BF16", "F32")


def _exact_scales(scales: Any, dtype: str) -> bool:
    """Is s x t exact in ``dtype`` for every value of every scale in ``scales``?"""
    return all((round_through(v, dtype) == v).all() for v in (np.asarray(s, dtype=np.float32) for s in scales))


def _narrowest(scale: Any) -> str:
    """The narrowest float dtype in which s x t is exact for every value of ``scale``."""
    return next(d for d in NARROWEST_FIRST if _exact_scales([scale], d))


def _loaded(e) -> tuple[np.ndarray, Any]:
    t = e.load()
    return t.codes, t.scale


def _holds(model: Model, scales: dict[str, Any], dtype: str) -> bool:
    """Does ``dtype`` hold every ternary value (its scales) and every float tensor exactly?"""
    if not _exact_scales(scales.values(), dtype):
        return False
    for e in model.entries:
        if not e.coded:
            held = exact_in(e.load(), dtype)
            if e.release:
                e.release()
            if not held:
                return False
    return True


def write_hf(plan: HFPlan, out_dir: Path, *, overwrite: bool, protect: list[Path],
             progress: Callable[[str, int], None] | None = None, digest: bool = False) -> tuple[int, dict[str, str]]:
    """Write ``plan`` into ``out_dir`` atomically; returns the bytes written and, with ``digest``,
    {file name: sha256} of the weights file, hashed while its fsync waited for the disk."""
    with ModelDirWriter(out_dir, overwrite=overwrite, protect=protect) as writer:
        writer.write_json("config.json", plan.config)
        for path in plan.copy:
            if path.name != "config.json":
                writer.copy(path)
        for name, data in plan.files.items():
            writer.write_bytes(name, data)
        with writer.safetensors("model.safetensors", plan.metadata, digest=digest) as st:
            for t in plan.tensors:
                st.add(t.name, t.dtype, t.shape)
            write_in_order(plan.tensors, st.write, progress)
        writer.commit()
    return sum(p.stat().st_size for p in Path(out_dir).iterdir() if p.is_file()), writer.digests


def hf_config(model: Model, torch_dtype: str = "bfloat16") -> dict[str, Any]:
    """config.json for ``model`` without a quantization entry: the source's own, with the
    hyper-parameters and architecture bitpack read (built from them for a GGUF source)."""
    base = {k: v for k, v in (model.config or {}).items() if k != "quantization_config"}
    base.update(model.hparams.to_config())
    base["architectures"] = list(model.arch.hf_architectures)
    base["model_type"] = model.arch.hf_model_type
    base.setdefault("torch_dtype", torch_dtype)
    return base


def _config(model: Model, codec: str, linear_class: str) -> dict[str, Any]:
    base = hf_config(model)
    if codec == "hf_packed":
        not_convert = (model.config or {}).get("quantization_config", {}).get("modules_to_not_convert")
        base["quantization_config"] = {
            "quant_method": "bitnet", "linear_class": linear_class, "quantization_mode": "offline",
            "modules_to_not_convert": not_convert if not_convert is not None else ["lm_head"],
        }
    else:
        base["quantization_config"] = {"quant_method": "bitpack", "codec": codec, "format_version": 1,
                                       "scale_convention": "multiply"}
    return base


def _scale_dtype(model: Model, linear_class: str, requested: str, packed: bool) -> str:
    if packed and linear_class == "bitlinear" and model.source_scale_dtype in FLOAT_STORAGE \
            and model.linear_class == "bitlinear":
        return model.source_scale_dtype  # the source's own weight_scale bits are kept
    return "BF16" if requested == "bf16" and packed else "F32"  # bitpack's own layouts keep F32 (checkpoints.md §7)


def _encoded(t, codec) -> np.ndarray:
    return codec.encode(t.codes, t.scale)  # per-block scales were refused up front (single_scales)


def _weight_scales(model: Model, linear_class: str, dtype: str, allow_rounding: bool,
                   plan: HFPlan, any_scale: bool = False) -> dict[str, tuple[str, np.ndarray]]:
    """Every projection's stored weight_scale (dtype, value), decided before writing: a scale
    that would not read back exactly is refused -- all of them listed -- unless allowed. A
    layout with ``any_scale`` keeps per-row or per-group scales as an F32 (M, n) tensor."""
    scales = read_scales(model.ternary) if any_scale else single_scales(model.ternary, "hf_packed")
    out, lossy = {}, []
    for e in model.ternary:
        if np.ndim(scales[e.name]):  # (M, n) at the coarsest exact granularity, F32: exact
            out[e.name] = ("F32", np.ascontiguousarray(scales[e.name], dtype="<f4"))
            continue
        s = np.float32(scales[e.name])
        if dtype == model.source_scale_dtype and linear_class == "bitlinear" and e.source_scale is not None:
            out[e.name] = (dtype, e.source_scale())  # the checkpoint's own bits: exact round trip
            continue
        stored = LINEAR_CLASSES[linear_class].stored(s)
        value = round_to(np.array([stored], dtype=np.float32), dtype) if dtype != "F32" else np.array([stored], "<f4")
        read = Float(value, dtype).values[0]
        back = LINEAR_CLASSES[linear_class].scale(read)
        if back != s:
            lossy.append(f"{e.name}: scale {float(s)!r} stored as {float(back)!r}")
        out[e.name] = (dtype, value)
    if lossy and not allow_rounding:
        raise BitpackError(f"{len(lossy)} scales do not survive as {linear_class} {dtype} weight_scale: "
                           + "; ".join(lossy[:6]) + ("; ..." if len(lossy) > 6 else "")
                           + ". Pass --allow-scale-rounding to accept, or keep --scale-dtype f32")
    plan.notes.extend(lossy)
    return out
