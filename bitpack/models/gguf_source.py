"""Read a GGUF file of any producer dialect into the canonical model.

The dialect is identified before any type id is interpreted (spec/gguf.md §3.2, done by
the container). Ternary tensors decode through their codec; TL1/TL2 need tile parameters,
taken from ``bitpack.codec_params`` or else the upstream presets (gguf.md §8). A TQ tensor
with block scales of 1.0 and an F32 ``<name>.scale`` companion has that value as its scale
(gguf.md §6.1). Llama q/k rows are put back into HF order (checkpoints.md §5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..codecs import codec_class, get_codec
from ..containers.gguf_read import GGUFFile
from ..errors import BitpackError
from ..jsonsafe import loads
from .arch import (
    ARCHITECTURES,
    Architecture,
    Kind,
    architecture,
    layer_count,
    qk_row_order,
    slots,
)
from .floats import STORAGE
from .grid import read_grids
from .hparams import HParams
from .model import Entry, Float, Model, Ternary
from .rotation import PREFIX as ROTATION_PREFIX
from .rotation import read_rotation

# Keys that say the weights are stored rotated, and the dialects whose runtime undoes it
# (qwen3.md §9.3): the PrismML fork from prism-v7 applies the inverse Hadamard transform.
ROTATING_DIALECTS = ("prism",)


def rotation_key(keys: Any) -> str | None:
    """The first key saying the weights are stored rotated (qwen3.md §9), if any."""
    return next((k for k in keys if k.startswith(ROTATION_PREFIX)), None)


def gguf_architecture(name: str | None, where: str) -> Architecture:
    """The graph named by a GGUF's general.architecture (aliases included), or a clear refusal."""
    try:
        return architecture(name or "")
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise BitpackError(f"{where}: architecture {name!r} is not one bitpack converts ({known}, bitnet-25)") from None


def open_gguf(path: Path, dialect: str | None = None, tile_params: dict[str, Any] | None = None,
              architecture: str | None = None) -> Model:
    """The canonical model of a GGUF file, its hyper-parameters, tokenizer arrays and every
    tensor's type and shape checked before any tensor is read. ``architecture`` names the graph
    when general.architecture is missing or one bitpack does not know; the hyper-parameter keys
    are still read under the file's own name."""
    f = GGUFFile(path, dialect=dialect)
    where = str(path)
    name = f.architecture
    if name is not None and not isinstance(name, str):
        raise BitpackError(f"{where}: general.architecture is {type(name).__name__}; expected a string")
    arch = gguf_architecture(architecture or name, where)
    name = name or arch.name
    present = {t.name for t in f.tensors}
    tied = "output.weight" not in present
    hp = HParams.from_gguf(f.kv, name, arch.hidden_act, tied, where)
    backed = layer_count(present)
    if hp.n_layers > backed:
        raise BitpackError(f"{where}: {name}.block_count is {hp.n_layers} but the file holds tensors for "
                           f"{backed} layer{'s' if backed != 1 else ''}")
    _check_tokenizer_arrays(f.kv, where)
    params = _codec_params(f, where)
    used: set[str] = set()
    entries, missing = [], []
    for canonical, slot, _layer in slots(arch, hp.n_layers, tied):
        if canonical not in present:
            missing.append(canonical)
            continue
        used.add(canonical)
        # a weight-only graph's float projection, embedding or head: read onto its grid below
        float_weight = arch.weight_only and f.type_name(canonical) in STORAGE and slot.kind is not Kind.NORM
        if slot.kind is Kind.TERNARY and not float_weight:
            entries.append(_ternary_entry(f, canonical, slot, hp, arch, params, tile_params, used, where))
        elif slot.kind is not Kind.NORM and f.codec_name(canonical) is not None:  # a ternary embedding or head
            _check_float_tensor(f, canonical, slot.kind, f.codec_name(canonical), hp, where)
            entries.append(_ternary_entry(f, canonical, slot, hp, arch, params, tile_params, used, where))
        else:
            type_name = f.type_name(canonical)
            _check_float_tensor(f, canonical, slot.kind, type_name, hp, where)
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
    float_reason = read_grids(entries, arch, where)
    rotation, problem = rotation_of(f, where)
    return Model(
        source=str(path), container="gguf", layout=f"gguf {'/'.join(sorted({e.stored for e in entries if e.kind is Kind.TERNARY}))}",
        arch=arch, hparams=hp, entries=entries, files=[Path(path)],
        tokenizer_kv={k: (v, f.kv_types[k]) for k, v in f.kv.items() if k.startswith("tokenizer.")},
        dialect=f.dialect, codec_params=params, warnings=warnings,
        precision="float" if float_reason else "ternary", float_reason=float_reason, rotated=rotation_key(f.kv),
        rotation=rotation, rotation_problem=problem,
    )


def rotation_of(f: GGUFFile, where: str) -> tuple[Any, str | None]:
    """The file's Hadamard contract (rotation.py), or why bitpack does not run it, from the
    header alone; the file still opens (inspect, tensor comparison, repack for the Prism fork)."""
    if rotation_key(f.kv) is None:
        return None, None
    try:
        return read_rotation(f.kv, {t.name: t.shape[-1] for t in f.tensors}, where), None
    except BitpackError as err:
        return None, str(err)


def _ternary_entry(f: GGUFFile, canonical: str, slot: Any, hp: HParams, arch: Any, params: dict[str, Any],
                   tile_params: dict[str, Any] | None, used: set[str], where: str) -> Entry:
    """A ternary projection of the file: its codec, shape and parameters checked; a TQ tensor
    with an F32 ``.scale`` companion (exact scales, gguf.md §6.1) reads the companion too."""
    codec_name = f.codec_name(canonical)
    if codec_name is None:
        raise BitpackError(f"{where}: {canonical} is {f.type_name(canonical)}, not a ternary type; "
                           "bitpack converts ternary GGUF files")
    shape = hp.ternary_shape(canonical) if slot.kind is Kind.TERNARY else tuple(f.shape(canonical))
    if f.shape(canonical) != shape:
        raise BitpackError(f"{where}: {canonical} has shape {list(f.shape(canonical))}, "
                           f"expected {list(shape)} from the hyper-parameters")
    scale_name = canonical.removesuffix(".weight") + ".scale"
    companion = scale_name in {t.name for t in f.tensors}
    tensor_params = _tensor_params(codec_name, canonical, shape, params, tile_params, where)
    if companion:
        used.add(scale_name)
        tensor_params = {**tensor_params, "scale_mode": "separate"}
    table = slot.kind is not Kind.TERNARY
    if table and companion:
        raise BitpackError(f"{where}: {canonical} has a {scale_name} tensor; only projections may")
    return Entry(canonical, slot.kind, shape, codec_name,
                 _ternary_loader(f, canonical, shape, codec_name, tensor_params,
                                 scale_name if companion else None, arch, hp, where),
                 source_name=canonical, source_params=tensor_params,
                 release=lambda n=canonical: f.release(n),
                 all_zero=lambda n=canonical, c=codec_name, p=tensor_params, s=shape:
                     get_codec(c, **p).all_zero(f.raw(n), s),
                 ternary=table, load_rows=_rows_loader(f, canonical, shape, codec_name, tensor_params) if table else None,
                 raw=None if companion or arch.permute_qk else (lambda n=canonical: f.raw(n)))


def _check_float_tensor(f: GGUFFile, name: str, kind: Kind, type_name: str, hp: HParams, where: str) -> None:
    """A norm, embedding, head or float projection: its shape against the hyper-parameters, a
    norm's type a float."""
    shape = tuple(f.shape(name))
    if kind is Kind.TERNARY:  # a weight-only graph's float projection (read onto its grid later)
        if shape != hp.ternary_shape(name):
            raise BitpackError(f"{where}: {name} has shape {list(shape)}, expected {list(hp.ternary_shape(name))} "
                               "from the hyper-parameters")
        return
    if not hp.float_shape_fits(name, shape):
        raise BitpackError(f"{where}: {name} has shape {list(shape)}, expected {list(hp.float_shape(name))} "
                           "from the hyper-parameters")
    if kind is Kind.NORM and type_name not in STORAGE:
        raise BitpackError(f"{where}: {name} is {type_name}; a norm must be {', '.join(STORAGE)}")


# tokenizer.* arrays bitpack carries over: (key, element check, what an element must be)
TOKENIZER_ARRAYS = (
    ("tokenizer.ggml.tokens", lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "strings"),
    ("tokenizer.ggml.merges", lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "strings"),
    ("tokenizer.ggml.token_type", lambda v: isinstance(v, np.ndarray) and v.dtype.kind in "iu", "integers"),
    ("tokenizer.ggml.scores", lambda v: isinstance(v, np.ndarray) and v.dtype.kind == "f", "floats"),
)


def _check_tokenizer_arrays(kv: dict[str, Any], where: str) -> None:
    for key, ok, what in TOKENIZER_ARRAYS:
        if key in kv and not ok(kv[key]):
            raise BitpackError(f"{where}: GGUF key '{key}' must be an array of {what}")
    tokens = kv.get("tokenizer.ggml.tokens")
    for key in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
        if tokens is not None and key in kv and len(kv[key]) != len(tokens):
            raise BitpackError(f"{where}: GGUF key '{key}' has {len(kv[key])} entries; "
                               f"tokenizer.ggml.tokens has {len(tokens)}")
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"):
        if key in kv and not isinstance(kv[key], str):
            raise BitpackError(f"{where}: GGUF key '{key}' must be a string")


def _codec_params(f: GGUFFile, where: str) -> dict[str, Any]:
    """bitpack.codec_params: a JSON object of {tensor name: {parameter: value}}."""
    text = f.kv.get("bitpack.codec_params")
    if text is None:
        return {}
    if not isinstance(text, str):
        raise BitpackError(f"{where}: GGUF key 'bitpack.codec_params' must be a string holding JSON")
    params = loads(text, f"{where}: bitpack.codec_params")
    if not isinstance(params, dict):
        raise BitpackError(f"{where}: bitpack.codec_params must be a JSON object")
    for name, value in params.items():
        if not isinstance(value, dict) or not all(isinstance(v, (int, float, str)) for v in value.values()):
            raise BitpackError(f"{where}: bitpack.codec_params['{name[:60]}'] must be an object of numbers "
                               "and strings")
        tiles = [value[k] for k in ("BM", "BK", "bm") if k in value]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in tiles):
            raise BitpackError(f"{where}: bitpack.codec_params['{name[:60]}'] tiles (BM, BK, bm) must be "
                               "positive integers")
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


def _rows_loader(f: GGUFFile, name: str, shape: tuple[int, int], codec_name: str, params: dict[str, Any]):
    """Rows lo:hi of a ternary embedding or head, decoded alone when the layout allows it."""
    codec = get_codec(codec_name, **params)
    per_row = codec.row_bytes(shape[1])
    if per_row is None:
        return None

    def load_rows(lo: int, hi: int) -> Ternary:
        return Ternary(*codec.decode(f.raw(name)[lo * per_row : hi * per_row], (hi - lo, shape[1])))

    return load_rows


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
