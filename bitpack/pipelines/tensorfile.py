"""One ternary tensor to one codec's bytes and back, as files.

``bitpack encode`` writes exactly the bytes a runtime reads for one tensor (for GGUF
codecs: the tensor data, trailers included) plus a small JSON sidecar recording the
codec configuration, shape and, where the layout keeps it outside the bytes, the scale.
Runtime authors use it to produce known-answer data for their kernels; ``bitpack
decode`` reads it back, validating every byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..codecs import Codec, get_codec, list_codecs
from ..containers.files import check_output_file, write_atomic
from ..errors import BitpackError
from ..jsonsafe import check_depth

EXAMPLE_SHAPE = (2560, 6912)  # ffn_down-like shape of BitNet b1.58 2B-4T


def formats_table() -> list[dict[str, Any]]:
    """One row per codec for ``bitpack formats``."""
    rows = []
    for name in list_codecs():
        codec = get_codec(name)
        rows.append({
            "name": name,
            "aliases": list(codec.aliases),
            "container": codec.container,
            "containers": list(codec.containers),
            "bits_per_weight_text": codec.bits_text,
            "bits_per_weight_example": {
                "shape": list(EXAMPLE_SHAPE),
                "value": round(codec.bits_per_weight(EXAMPLE_SHAPE), 4),
            },
            "constraints": codec.constraints,
            "lossless_scale": codec.lossless_scale,
            "parameters": list(codec.param_names),
            "runtime": codec.runtime,
            "spec": codec.spec,
        })
    return rows


def _scale_outside_bytes(codec: Codec) -> bool:
    """Whether the layout keeps the scale in a tensor of its own rather than in the bytes."""
    return codec.container == "safetensors" or codec.params.get("scale_mode") == "separate"


def encode_file(src: Path, to: str, out: Path | None, params: dict[str, Any],
                *, overwrite: bool = False) -> dict[str, Any]:
    codes, scale = _load_npz(src)
    codec = get_codec(to, **params).for_shape(codes.shape)
    out = out or src.with_name(f"{src.name}.{codec.name}")
    check_output_file(out, overwrite=overwrite, inputs=[src])
    outside = _scale_outside_bytes(codec)
    if outside and np.ndim(scale):
        raise BitpackError(f"{codec.name} keeps one scale per tensor; {src} has per-block scales")
    data = codec.encode(codes, np.float32(1) if outside and codec.container == "gguf" else scale)
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1).tobytes()
    sidecar = {
        "bitpack_version": __version__,
        "codec": codec.get_config(),
        "shape": list(codes.shape),
        "scale": float(scale) if outside else None,
        "nbytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    write_atomic(out, raw)
    write_atomic(_sidecar(out), (json.dumps(sidecar, indent=2) + "\n").encode())
    return {"output": str(out), "bits_per_weight": round(codec.bits_per_weight(codes.shape), 4),
            **sidecar}


def decode_file(src: Path, out: Path | None, *, overwrite: bool = False) -> dict[str, Any]:
    meta_path = _sidecar(src)
    try:
        meta = json.loads(check_depth(meta_path.read_text(), str(meta_path)))
        config, shape, scale = meta["codec"], tuple(meta["shape"]), meta["scale"]
    except FileNotFoundError:
        raise BitpackError(f"{meta_path} is missing; it records the codec and shape of {src}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise BitpackError(f"{meta_path} is not a bitpack sidecar ({err})") from None
    codec = get_codec(config)
    out = out or src.with_name(src.name + ".npz")
    check_output_file(out, overwrite=overwrite, inputs=[src])
    buf = _read(src)
    if codec.container == "safetensors":
        codes, s = codec.decode(buf, shape, scale=np.float32(scale))
    else:
        codes, s = codec.decode(buf, shape)
        if _scale_outside_bytes(codec):
            s = np.float32(scale)
    payload = _npz_bytes(codes=codes, scale=np.asarray(s, dtype=np.float32))
    write_atomic(out, payload)
    return {"output": str(out), "codec": config, "shape": list(shape),
            "scale": float(s) if np.ndim(s) == 0 else "per-block", "nonzero": int(np.count_nonzero(codes))}


def _load_npz(src: Path) -> tuple[np.ndarray, Any]:
    with _existing(src).open("rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # .npz files are zip archives
            raise BitpackError(f"{src} is not a .npz file (no zip signature)")
    try:
        with np.load(src, allow_pickle=False) as npz:
            if "codes" not in npz or "scale" not in npz:
                raise BitpackError(f"{src} must hold arrays 'codes' and 'scale'; it has {sorted(npz.files)}")
            codes, scale = npz["codes"], npz["scale"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise BitpackError(f"{src} is not a readable .npz file ({err})") from None
    if codes.ndim != 2:
        raise BitpackError(f"{src}: 'codes' must be 2-D (M, K); got shape {codes.shape}")
    return codes, (scale.reshape(()).astype(np.float32)[()] if scale.size == 1 else scale)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise BitpackError(f"{path} does not exist or is not a file")
    return path


def _read(path: Path) -> bytes:
    return _existing(path).read_bytes()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
