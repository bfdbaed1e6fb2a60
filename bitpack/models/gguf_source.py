"""Read a GGUF file of any producer dialect into the canonical model.

The dialect is identified before any type id is interpreted (spec/gguf.md §3.2, done by
the container). Ternary tensors decode through their codec; TL1/TL2 need tile parameters,
taken from ``bitpack.codec_params`` or else the upstream presets (gguf.md §8). A TQ tensor
with block scales of 1.0 and an F32 ``<name>.scale`` companion has that value as its scale
(gguf.md §6.1). Llama q/k rows are put back into HF order (checkpoints.md §5).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs import codec_class, get_codec
from ..containers.gguf_read import GGUFFile
from ..errors import BitpackError
from .arch import ARCHITECTURES, Architecture, Kind, architecture, qk_row_order, slots
from .floats import STORAGE
from .hparams import HParams
from .model import Entry, Float, Model, Ternary


def gguf_architecture(name: str | None, where: str) -> Architecture:
    """The graph named by a GGUF's general.architecture (aliases included), or a clear refusal."""
    try:
        return architecture(name or "")
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise BitpackError(f"{where}: architecture {name!r} is not one bitpack converts ({known}, bitnet-25)") from None


def open_gguf(path: Path, dialect: str | None = None, tile_params: dict[str, Any] | None = None) -> Model:
    f = GGUFFile(path, dialect=dialect)
    where = str(path)
    name = f.architecture
    arch = gguf_architecture(name, where)
    present = {t.name for t in f.tensors}
    tied = "output.weight" not in present
    hp = HParams.from_gguf(f.kv, name, arch.hidden_act, tied, where)
    params = _codec_params(f, where)
    used: set[str] = set()
    entries, missing = [], []
    for canonical, slot, _layer in slots(arch, hp.n_layers, tied):
        if canonical not in present:
            missing.append(canonical)
            continue
        used.add(canonical)
        tensor = f.tensor(canonical)
        if slot.kind is Kind.TERNARY:
            codec_name = f.codec_name(tensor)
            if codec_name is None:
                raise BitpackError(f"{where}: {canonical} is {f.type_name(tensor)}, not a ternary type; "
                                   "bitpack converts ternary GGUF files")
            shape = hp.ternary_shape(canonical)
            if f.shape(canonical) != shape:
                raise BitpackError(f"{where}: {canonical} has shape {list(f.shape(canonical))}, "
                                   f"expected {list(shape)} from the hyper-parameters")
            scale_name = canonical.removesuffix(".weight") + ".scale"
            if scale_name in present:
                used.add(scale_name)
            tensor_params = _tensor_params(codec_name, canonical, shape, params, tile_params, where)
            if scale_name in present:  # TQ with unit block scales and an exact F32 companion
                tensor_params = {**tensor_params, "scale_mode": "separate"}
            entries.append(Entry(canonical, slot.kind, shape, codec_name,
                                 _ternary_loader(f, canonical, shape, codec_name, tensor_params,
                                                 scale_name if scale_name in present else None, arch, hp, where),
                                 source_name=canonical, source_params=tensor_params,
                                 release=lambda n=canonical: f.release(n),
                                 all_zero=lambda n=canonical, c=codec_name, p=tensor_params, s=shape:
                                     get_codec(c, **p).all_zero(f.raw(n), s)))
        else:
            type_name = f.type_name(tensor)
            entries.append(Entry(canonical, slot.kind, f.shape(canonical), type_name,
                                 _float_loader(f, canonical, type_name, where), source_name=canonical,
                                 release=lambda n=canonical: f.release(n)))
    if missing:
        raise BitpackError(f"{where}: missing tensors: {', '.join(missing[:8])}")
    warnings = []
    if arch.head_always_tied and "output.weight" in present:
        # bitnet.cpp's graph multiplies by token_embd even when an output tensor exists (gguf.md §4)
        used.add("output.weight")
        warnings.append(f"{where}: output.weight is ignored: the {name} graph uses token_embd as the head")
    extra = sorted(present - used)
    if extra:
        raise BitpackError(f"{where}: tensors the {name} graph does not use: {', '.join(extra[:8])}")
    return Model(
        source=str(path), container="gguf", layout=f"gguf {'/'.join(sorted({e.stored for e in entries if e.kind is Kind.TERNARY}))}",
        arch=arch, hparams=hp, entries=entries, files=[Path(path)],
        tokenizer_kv={k: (v, f.kv_types[k]) for k, v in f.kv.items() if k.startswith("tokenizer.")},
        dialect=f.dialect, codec_params=params, warnings=warnings,
    )


def _codec_params(f: GGUFFile, where: str) -> dict[str, Any]:
    text = f.kv.get("bitpack.codec_params")
    if text is None:
        return {}
    try:
        params = json.loads(text)
    except ValueError:
        raise BitpackError(f"{where}: bitpack.codec_params is not JSON") from None
    if not isinstance(params, dict):
        raise BitpackError(f"{where}: bitpack.codec_params must be a JSON object")
    return params


def _tensor_params(codec: str, name: str, shape: tuple[int, int], params: dict[str, Any],
                   given: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Codec parameters for one tensor: explicit, then the file's own, then presets."""
    cls = codec_class(codec)
    if not cls.tiled:  # parameters the file recorded (i2_s's layout: nothing in the bytes tells it)
        return {k: v for k, v in params.get(name, {}).items() if k in cls.param_names}
    if given and "BM" not in given:  # a kernel_config.ini table: tiles per (M, K)
        tiles = given.get(tuple(shape))
        if tiles is None:
            raise BitpackError(f"{where}: {name} has shape {shape}, which the given kernel_config.ini does not list")
        return tiles.as_dict()
    if given:
        return dict(given)
    if name in params:
        return {k: params[name][k] for k in ("BM", "BK", "bm") if k in params[name]}
    found = {p.tiles for p in cls.presets if p.shape == shape}
    if len(found) == 1:
        return found.pop().as_dict()
    if not found:
        raise BitpackError(f"{where}: {name} is {codec} with shape {shape}, the file does not record its tiles "
                           "and no upstream preset has this shape; pass the tiles the file was made with")
    raise BitpackError(f"{where}: {name}: several {codec} presets fit shape {shape}; pass the tiles explicitly")


def _ternary_loader(f, name, shape, codec_name, params, scale_name, arch, hp, where):
    def load() -> Ternary:
        codec = get_codec(codec_name, **params)
        codes, scale = codec.decode(f.raw(name), shape)
        if scale_name is not None:
            extra = _f32_values(f, scale_name, where)
            if extra.size != 1 or not np.isfinite(extra[0]):
                raise BitpackError(f"{where}: {scale_name} must hold one finite F32 value")
            if np.ndim(scale) != 0 or scale != 1:
                raise BitpackError(f"{where}: {name} has block scales other than 1.0 and a {scale_name} "
                                   "tensor; bitpack cannot tell which one holds the scale")
            scale = np.float32(extra[0])
        order = qk_row_order(name, shape[0], hp.n_heads, hp.n_kv_heads, to_gguf=False) if arch.permute_qk else None
        if order is not None:  # back to HF row order (checkpoints.md §5)
            codes = codes[order]
            if np.ndim(scale):
                scale = scale[order]
        return Ternary(np.ascontiguousarray(codes), scale)

    return load


def _f32_values(f: GGUFFile, name: str, where: str) -> np.ndarray:
    tensor = f.tensor(name)
    if f.type_name(tensor) != "F32":
        raise BitpackError(f"{where}: {name} must be F32, it is {f.type_name(tensor)}")
    return f.raw(name).view("<f4").reshape(-1)


def _float_loader(f, name, type_name, where):
    def load() -> Float:
        raw = f.raw(name)
        shape = f.shape(name)
        if type_name in STORAGE:
            return Float(raw.view(STORAGE[type_name]).reshape(shape), type_name)
        import gguf  # quantized embeddings (Q8_0, Q4_K, Q6_K): their dequantized values are the weights

        try:
            qtype = gguf.GGMLQuantizationType[type_name]
            values = gguf.quants.dequantize(raw.reshape(shape[0], -1), qtype).astype(np.float32)
        except (KeyError, NotImplementedError, ValueError) as err:
            raise BitpackError(f"{where}: {name} is {type_name}, which bitpack cannot read ({err})") from None
        return Float(np.ascontiguousarray(values.reshape(shape)), type_name)

    return load
