"""The conversion pipeline: source -> canonical model -> target layout, streaming.

Sources are sniffed (Pillow style: a directory with config.json, a GGUF magic, a
safetensors header); the target is planned completely -- every refusal happens before a
byte is written -- and then written one tensor at a time to a temporary name that is
renamed at the end. The input is never written over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .codecs import codec_class
from .codecs.tiles import kernel_config_ini
from .containers.files import write_atomic
from .errors import BitpackError
from .models.gguf_source import open_gguf
from .models.gguf_target import plan_gguf, write_gguf
from .models.hf_source import open_hf
from .models.hf_target import plan_hf, write_hf
from .models.model import Model

Progress = Callable[[str, int], None]  # (tensor name, bytes written)


def sniff(path: Path) -> str:
    """"gguf" or "safetensors" for what ``path`` is; a clear error when it is neither."""
    if path.is_dir():
        if (path / "config.json").is_file():
            return "safetensors"
        raise BitpackError(f"{path} is a directory without config.json; not an HF model directory")
    if not path.is_file():
        raise BitpackError(f"{path} does not exist")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head[:4] == b"GGUF":
        return "gguf"
    if path.suffix == ".json" or (len(head) >= 9 and head[8:9] == b"{"):  # index, or safetensors header
        return "safetensors"
    raise BitpackError(f"{path} is neither a GGUF file, a safetensors file nor an HF model directory")


def open_model(path: str | Path, *, dialect: str | None = None, tile_params: dict[str, Any] | None = None,
               scale_convention: str | None = None) -> Model:
    path = Path(path)
    if sniff(path) == "gguf":
        return open_gguf(path, dialect=dialect, tile_params=tile_params)
    return open_hf(path, scale_convention=scale_convention)


@dataclass
class ConvertOptions:
    output: Path | None = None
    overwrite: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # codec parameters (TL tiles)
    dialect: str | None = None  # GGUF dialect of the target
    source_dialect: str | None = None
    embed_dtype: str | None = None
    scale_dtype: str = "f32"
    linear_class: str | None = None
    scale_convention: str | None = None
    allow_scale_rounding: bool = False
    tile_params: dict[str, Any] | None = None  # tiles of a foreign TL source


def default_output(src: Path, codec: str, container: str) -> Path:
    stem = src.name if src.is_dir() else src.stem
    if src.name == "model.safetensors" or src.suffix == ".json":
        stem = src.parent.name
    base = src if src.is_dir() else src.parent
    folder = base.parent if src.is_dir() else base
    name = f"{stem}-{codec}"
    return folder / (name + ".gguf" if container == "gguf" else name)


def convert(src: str | Path, to: str, options: ConvertOptions | None = None,
            progress: Progress | None = None, model: Model | None = None) -> dict[str, Any]:
    """Convert ``src`` to codec ``to``; returns the report ``convert --json`` prints."""
    options = options or ConvertOptions()
    src = Path(src)
    started = time.perf_counter()
    cls = codec_class(to)
    model = model or open_model(src, dialect=options.source_dialect, tile_params=options.tile_params,
                                scale_convention=options.scale_convention)
    out = options.output or default_output(src, cls.name, cls.container)
    source_info = {"path": str(src), "layout": model.layout, "architecture": model.arch.name,
                   "linear_class": model.linear_class, "dialect": model.dialect}
    if cls.container == "gguf":
        plan = plan_gguf(model, cls.name, dialect=options.dialect, params=options.params,
                         embed_dtype=options.embed_dtype, allow_scale_rounding=options.allow_scale_rounding,
                         source_info=source_info)
        written = write_gguf(plan, out, overwrite=options.overwrite, inputs=model.files, progress=progress)
        tensors = [{"name": t.name, "type": t.type_name, "codec": (t.codec or {}).get("id"),
                    "bits_per_weight": t.bits_per_weight} for t in plan.tensors]
        extra = {"dialect": plan.dialect}
        if plan.tiles:
            ini = out.with_name(out.name + ".kernel_config.ini")
            write_atomic(ini, kernel_config_ini(sorted(set(plan.tiles))).encode())
            extra["kernel_config"] = str(ini)
        notes, warnings = plan.notes, plan.warnings
    else:
        plan = plan_hf(model, cls.name, scale_dtype=options.scale_dtype, linear_class=options.linear_class,
                       allow_scale_rounding=options.allow_scale_rounding, source_info=source_info)
        written = write_hf(plan, out, overwrite=options.overwrite, protect=[Path(f) for f in model.files],
                           progress=progress)
        tensors = [{"name": t.name, "dtype": t.dtype, "codec": t.codec} for t in plan.tensors]
        extra = {"linear_class": plan.config["quantization_config"].get("linear_class")}
        notes, warnings = plan.notes, plan.warnings
    return {
        "output": str(out), "format": cls.name, "source": source_info, "architecture": model.arch.name,
        "tensors": tensors, "bytes_written": written, "seconds": round(time.perf_counter() - started, 3),
        "rounded": notes, "warnings": warnings, **extra,
    }
