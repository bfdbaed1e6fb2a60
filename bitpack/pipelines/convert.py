"""The conversion pipeline: source -> canonical model -> target layout, streaming.

Sources are sniffed (Pillow style: a directory with config.json, a GGUF magic, a
safetensors header); the target is planned completely -- every refusal happens before a
byte is written -- and then written one tensor at a time to a temporary name that is
renamed at the end. The input is never written over.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..codecs import codec_class, get_codec
from ..codecs.tiles import kernel_config_ini
from ..containers.files import write_atomic
from ..containers.gguf_read import GGUFFile
from ..containers.safetensors_read import DTYPES
from ..errors import BitpackError, Terminated
from ..models.arch import hf_name
from ..models.checks import REVISION_HINT, degenerate_tensors, describe
from ..models.floats import STORAGE
from ..models.gguf_repack import plan_repack, repacks
from ..models.gguf_target import plan_gguf, write_gguf
from ..models.hf_target import plan_hf, write_hf
from ..models.model import Model
from ..models.stack_target import write_stack
from ..models.text import encode_text
from .calibrate import collect, plan, windows
from .open import Source, open_model, provenance, resolve, sniff
from .ppl import perplexity
from .receipt import Hasher, receipt_path, write_receipt
from .verify import verify

Progress = Callable[[str, int], None]  # (tensor name, bytes written)


def _notify(progress: Progress | None, hook: str, *args: Any) -> None:
    """Optional extras of a progress callback (the command line's bar has them; a plain function
    has none): ``plan(tensors, nbytes)`` once the output is laid out, before its first byte, so a
    bar can show totals; ``stage(name)`` when work other than writing starts ("verifying")."""
    method = getattr(progress, hook, None)
    if method is not None:
        method(*args)


@dataclass
class ConvertOptions:
    output: Path | None = None
    overwrite: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # codec parameters (TL tiles)
    dialect: str | None = None  # GGUF dialect of the target
    source_dialect: str | None = None
    embed_dtype: str | None = None
    scale_dtype: str | None = None  # hf_packed weight_scale dtype (default f32, exact)
    linear_class: str | None = None
    scale_convention: str | None = None
    allow_scale_rounding: bool = False
    allow_scale_merge: bool = False  # coarsen differing scales into a target's groups (lossy, reported)
    allow_rotated: bool = False  # write Hadamard-rotated weights for a runtime that does not undo it
    architecture: str | None = None  # the graph of a source whose config names an unknown class
    tile_params: dict[str, Any] | None = None  # tiles of a foreign TL source
    revision: str | None = None  # of a Hub source
    allow_degenerate: bool = False  # convert all-zero projections anyway (checks.py)
    receipt: bool = True  # write <output>.receipt.json
    verify: bool = False  # run `verify` on the output; its report goes into the receipt
    max_kl: float | None = None  # with verify, a lossy (bitstack) output passes only within these
    min_top1: float | None = None
    show_downloads: bool = True  # huggingface_hub's progress bars for a Hub source
    # BitStack targets (spec/bitstack.md §6): blocks and rank go in ``params``
    calibration: Path | None = None  # a text file; without it the decomposition is weight-only
    order: str | None = None  # output | weight | uniform | ppl (default: output with calibration, else weight)
    svd: str | None = None  # "randomized" (default) or "full", the reference's exact thin SVD
    blocks: int | None = None  # residual blocks per matrix (default 16); also accepted in ``params``
    rank: int | None = None  # rank of each block's magnitude (default 16); also accepted in ``params``
    n_samples: int | None = None  # calibration windows (default: up to 256, as the text allows)
    seqlen: int | None = None  # calibration window length (default: min(2048, context length))


# Which targets each target option applies to: a kind of target ("gguf": the GGUF codecs,
# "safetensors": the HF directory codecs, "bitstack") or one codec's name. An option given for a
# target it does not apply to is refused, naming the option and its targets -- never ignored,
# because an ignored option is a conversion the user did not ask for. Options about the source
# (--source-dialect, --tile-params, --scale-convention, --revision) apply to every target.
OPTION_TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {  # field: (command-line flag, targets)
    "dialect": ("--dialect", ("gguf",)),
    "embed_dtype": ("--embed-dtype", ("gguf",)),
    "allow_scale_merge": ("--allow-scale-merge", ("gguf",)),
    "allow_rotated": ("--allow-rotated", ("gguf",)),
    "allow_scale_rounding": ("--allow-scale-rounding", ("gguf", "safetensors")),
    "scale_dtype": ("--scale-dtype", ("hf_packed",)),
    "linear_class": ("--linear-class", ("hf_packed",)),
    "blocks": ("--blocks", ("bitstack",)),
    "rank": ("--rank", ("bitstack",)),
    "calibration": ("--calibration", ("bitstack",)),
    "order": ("--order", ("bitstack",)),
    "svd": ("--svd", ("bitstack",)),
    "max_kl": ("--max-kl", ("bitstack",)),
    "min_top1": ("--min-top1", ("bitstack",)),
}


def target_kind(cls: Any) -> str:
    """"bitstack", or the container of a ternary codec ("gguf" or "safetensors")."""
    return "bitstack" if cls.name == "bitstack" else cls.container


def check_target_options(options: ConvertOptions, cls: Any) -> None:
    """Refuse every option set (not None, not False) that does not apply to target ``cls``."""
    kind = target_kind(cls)
    given = {k: getattr(options, k) for k in OPTION_TARGETS}
    given.update({k: options.params[k] for k in ("blocks", "rank") if k in options.params})
    for field_name, set_to in given.items():
        flag, targets = OPTION_TARGETS[field_name]
        if set_to is None or set_to is False or kind in targets or cls.name in targets:
            continue
        names = [f"{t} targets" if t in ("gguf", "safetensors") else f"--to {t}" for t in targets]
        raise BitpackError(f"{flag} applies to {' and '.join(names)}, not --to {cls.name}; leave it out")


def default_output(src: Path, codec: str, container: str, hub_repo: str | None = None) -> Path:
    """``<name>-<codec>[.gguf]`` beside the source; for a Hub source, in the current folder."""
    if hub_repo is not None:
        stem, folder = hub_repo.split("/")[-1], Path.cwd()
    else:
        stem = src.name if src.is_dir() else src.stem
        if src.name == "model.safetensors" or src.suffix == ".json":
            stem = src.parent.name
        base = src if src.is_dir() else src.parent
        folder = base.parent if src.is_dir() else base
    name = f"{stem}-{codec}"
    return folder / (name + ".gguf" if container == "gguf" else name)


def convert(src: str | Path, to: str, options: ConvertOptions | None = None,
            progress: Progress | None = None, model: Model | None = None) -> dict[str, Any]:
    """Convert ``src`` (a path or a Hub repo id) to codec ``to``; returns the report
    ``convert --json`` prints, after writing the receipt when ``options.receipt``."""
    options = options or ConvertOptions()
    started = time.perf_counter()
    cls = codec_class(to)
    check_target_options(options, cls)
    if model is None and cls.container == "gguf" and not cls.lossy:
        source = resolve(src, options.revision, progress=options.show_downloads)
        if sniff(source.path) == "gguf" and repacks(source.path, options.source_dialect):
            return _repack(source, cls.name, options, progress, started)
    if model is None:
        model = open_model(src, dialect=options.source_dialect, tile_params=options.tile_params,
                           architecture=options.architecture,
                           scale_convention=options.scale_convention, revision=options.revision,
                           progress=options.show_downloads)
    _refuse_rotated(model, cls.name)
    origin = model.origin or {"path": str(src)}
    source_path = Path(origin.get("path", str(src)))
    read = [*model.files, *([Path(options.calibration)] if options.calibration and cls.name == "bitstack" else [])]
    hasher = Hasher(read) if options.receipt else None
    warnings = _check_source(model, options.allow_degenerate, hub="repo" in origin)
    out = options.output or default_output(source_path, cls.name, cls.container, origin.get("repo"))
    source_info = {**provenance(origin, model.files), "layout": model.layout, "architecture": model.arch.name,
                   "linear_class": model.linear_class, "dialect": model.dialect}
    write = _write_stack if cls.name == "bitstack" else _write_gguf if cls.container == "gguf" else _write_hf
    done = write(model, cls.name, out, options, progress, source_info)
    tensors, config, extra = done.pop("tensors"), done.pop("config"), done.pop("extra")
    sha256 = done.pop("sha256", None)  # GGUF and HF writers hash their files during the fsync
    report = {
        "output": str(out), "format": cls.name, "source": {**source_info, **origin}, "architecture": model.arch.name,
        "tensors": tensors, "bytes_written": done["bytes_written"], "seconds": round(time.perf_counter() - started, 3),
        "rounded": done["rounded"], "warnings": warnings + done["warnings"], **extra, "verify": None, "receipt": None,
    }
    return _finish(report, source_path, out, origin, hasher, config, options, progress, started, sha256)


def _finish(report: dict[str, Any], source_path: Path, out: Path, origin: dict[str, Any], hasher: Hasher | None,
            config: dict[str, Any], options: ConvertOptions, progress: Progress | None,
            started: float, sha256: str | dict[str, str] | None = None) -> dict[str, Any]:
    """What every conversion ends with: the optional verify, then the receipt (``sha256``: what
    the writer hashed already, the output file's digest or {file in the output folder: digest})."""
    if options.verify:
        _notify(progress, "stage", "verifying")
        try:
            report["verify"] = verify(source_path, out, max_kl=options.max_kl, min_top1=options.min_top1,
                                      reference_options={"scale_convention": options.scale_convention,
                                                         "tile_params": options.tile_params,
                                                         "dialect": options.source_dialect})
        except (KeyboardInterrupt, Terminated):  # an output asked to be verified and never was is not kept
            _discard(out, report)
            raise
    if hasher is not None:
        report["receipt"] = str(write_receipt(
            out, source=origin, inputs=hasher.result(), target={"format": report["format"], "config": config},
            tensors=report["tensors"], verify=report["verify"],
            companions=[Path(report["kernel_config"])] if "kernel_config" in report else [], output_sha256=sha256))
    else:  # an older receipt beside a replaced output would describe another file
        receipt_path(out).unlink(missing_ok=True)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _discard(out: Path, report: dict[str, Any]) -> None:
    """Remove a finished output (a file, or a directory bitpack just wrote) and its companions."""
    if out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    else:
        out.unlink(missing_ok=True)
    for companion in (report.get("kernel_config"), receipt_path(out)):
        if companion:
            Path(companion).unlink(missing_ok=True)


def _repack(source: Source, codec: str, options: ConvertOptions, progress: Progress | None,
            started: float) -> dict[str, Any]:
    """A GGUF file to another GGUF codec, tensor by tensor: ternary tensors re-encoded,
    everything else copied (models/gguf_repack.py; ``repacks`` says which files go this way)."""
    hasher = Hasher([source.path]) if options.receipt else None
    out = options.output or default_output(source.path, codec, "gguf", source.origin.get("repo"))
    with GGUFFile(source.path, dialect=options.source_dialect) as f:
        source_info = {**provenance(source.origin, [source.path]), "layout": f"gguf ({f.dialect})",
                       "architecture": f.architecture,
                       "dialect": f.dialect}
        plan = plan_repack(f, codec, dialect=options.dialect, params=options.params,
                           allow_scale_rounding=options.allow_scale_rounding,
                           allow_scale_merge=options.allow_scale_merge, allow_rotated=options.allow_rotated,
                           source_info=source_info)
        _notify(progress, "plan", len(plan.tensors), sum(t.nbytes for t in plan.tensors))
        written, sha256 = write_gguf(plan, out, overwrite=options.overwrite, inputs=[source.path], progress=progress,
                                     digest=options.receipt)
    tensors = [{"name": t.name, "type": t.type_name, "codec": (t.codec or {}).get("id"),
                "bits_per_weight": t.bits_per_weight} for t in plan.tensors]
    report = {"output": str(out), "format": codec, "source": {**source_info, **source.origin},
              "architecture": source_info["architecture"],
              "tensors": tensors, "bytes_written": written, "seconds": round(time.perf_counter() - started, 3),
              "rounded": plan.notes, "warnings": plan.warnings, "dialect": plan.dialect, "verify": None,
              "receipt": None}
    config = {"dialect": plan.dialect, "params": options.params or None, "repack": True, "lossy": plan.notes or None}
    return _finish(report, source.path, out, source.origin, hasher, config, options, progress, started, sha256)


def _write_gguf(model: Model, codec: str, out: Path, options: ConvertOptions, progress: Progress | None,
                source_info: dict[str, Any]) -> dict[str, Any]:
    plan = plan_gguf(model, codec, dialect=options.dialect, params=options.params,
                     embed_dtype=options.embed_dtype, allow_scale_rounding=options.allow_scale_rounding,
                     allow_scale_merge=options.allow_scale_merge,
                     source_info=source_info)
    _notify(progress, "plan", len(plan.tensors), sum(t.nbytes for t in plan.tensors))
    written, sha256 = write_gguf(plan, out, overwrite=options.overwrite, inputs=model.files, progress=progress,
                                 digest=options.receipt)
    extra: dict[str, Any] = {"dialect": plan.dialect}
    if plan.tiles:  # the file bitnet.cpp's kernel generator reads, beside the output
        ini = out.with_name(out.name + ".kernel_config.ini")
        write_atomic(ini, kernel_config_ini(sorted(set(plan.tiles))).encode())
        extra["kernel_config"] = str(ini)
    return {
        "tensors": [{"name": t.name, "type": t.type_name, "codec": (t.codec or {}).get("id"),
                     "bits_per_weight": t.bits_per_weight} for t in plan.tensors],
        "config": {"dialect": plan.dialect, "params": options.params or None, "embed_dtype": options.embed_dtype,
                   "tiles": [{"shape": list(shape), **t.as_dict()} for shape, t in sorted(set(plan.tiles))] or None,
                   "lossy": plan.notes or None},  # every rounded or merged scale, in the receipt too
        "extra": extra, "bytes_written": written, "rounded": plan.notes, "warnings": plan.warnings, "sha256": sha256,
    }


def _write_hf(model: Model, codec: str, out: Path, options: ConvertOptions, progress: Progress | None,
              source_info: dict[str, Any]) -> dict[str, Any]:
    scale_dtype = options.scale_dtype or "f32"
    plan = plan_hf(model, codec, scale_dtype=scale_dtype, linear_class=options.linear_class,
                   allow_scale_rounding=options.allow_scale_rounding, source_info=source_info)
    _notify(progress, "plan", len(plan.tensors),
            sum(math.prod(t.shape) * DTYPES[t.dtype].itemsize for t in plan.tensors))
    written, sha256 = write_hf(plan, out, overwrite=options.overwrite, protect=[Path(f) for f in model.files],
                               progress=progress, digest=options.receipt)
    logical = {hf_name(e.name): e.shape for e in model.coded}
    linear_class = plan.config.get("quantization_config", {}).get("linear_class")  # none: unpacked floats
    return {
        "tensors": [{"name": t.name, "dtype": t.dtype, "codec": t.codec,
                     "bits_per_weight": round(get_codec(t.codec).bits_per_weight(logical[t.name]), 4)
                     if t.codec else 8 * STORAGE[t.dtype].itemsize if t.dtype in STORAGE else None}
                    for t in plan.tensors],
        "config": {"linear_class": linear_class, "scale_dtype": scale_dtype},
        "extra": {"linear_class": linear_class}, "bytes_written": written, "rounded": plan.notes,
        "warnings": plan.warnings, "sha256": sha256,
    }


def _write_stack(model: Model, codec: str, out: Path, options: ConvertOptions, progress: Progress | None,
                 source_info: dict[str, Any]) -> dict[str, Any]:
    """Decompose ``model`` into a BitStack stack (spec/bitstack.md), calibrated when a text is given."""
    params = {**options.params, **{k: v for k, v in (("blocks", options.blocks), ("rank", options.rank))
                                   if v is not None}}
    unknown = sorted(set(params) - {"blocks", "rank"})
    if unknown:
        raise BitpackError(f"bitstack takes --blocks and --rank, not {', '.join(unknown)}")
    calibration = evaluate = None
    info = None
    if options.calibration is not None:
        try:
            text = Path(options.calibration).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise BitpackError(f"--calibration {options.calibration}: cannot read it as UTF-8 text ({err})") from None
        ids = encode_text(model, text)
        seqlen, n = plan(model, len(ids), options.seqlen, options.n_samples)
        calibration = collect(model, windows(ids, seqlen, n, seed=0))
        info = {"file": str(options.calibration), "tokens": len(ids), "seqlen": seqlen, "windows": n}
        if options.order == "ppl":  # the reference scores on a separate draw (seed + 1)
            scoring = windows(ids, seqlen, min(n, 32), seed=1)
            evaluate = lambda m: perplexity(m, scoring)  # noqa: E731
    elif options.order == "ppl":
        raise BitpackError("--order ppl scores blocks by perplexity on text: pass --calibration FILE")
    stack = write_stack(model, out, blocks=params.get("blocks"), rank=params.get("rank"),
                        calibration=calibration, order=options.order, svd=options.svd or "randomized",
                        overwrite=options.overwrite, progress=progress, evaluate=evaluate, source_info=source_info)
    extra = {k: stack[k] for k in ("container", "files", "blocks", "rank", "scaled", "order", "order_how",
                                   "min_bytes", "max_bytes", "errors") if k in stack}
    if info is not None:
        extra["calibration"] = info
    return {"tensors": stack["tensors"], "config": {**stack["codec_params"], "calibration": info},
            "extra": extra, "bytes_written": stack["bytes_written"], "rounded": [], "warnings": stack["warnings"]}


def _refuse_rotated(model: Model, target: str) -> None:
    """Weights stored Hadamard-rotated (qwen3.md §9) go only to GGUF files, for a runtime that
    undoes the rotation (the repack carries the keys). Every other target would hold the folded
    weights without the contract, and its runtime would write fluent but wrong text."""
    if model.rotated:
        raise BitpackError(f"{model.source} stores its weights Hadamard-rotated (key {model.rotated}); a {target} "
                           "output would keep the rotated weights without the keys, and no runtime of it undoes "
                           "the rotation. Convert it to a GGUF file for the Prism fork (pq2_0, ptq1_0, or q2_0 "
                           "--dialect prism)")


def _check_source(model: Model, allow: bool, hub: bool) -> list[str]:
    """Refuse degenerate projections (checks.py) unless allowed; allowed ones become warnings."""
    problems = degenerate_tensors(model)
    if not problems:
        return []
    if not allow:
        hint = REVISION_HINT if hub or model.arch.name == "bitnet-b1.58" else "check the source checkpoint"
        raise BitpackError(f"{describe(problems)}. A model with them runs but produces garbage; {hint}; "
                           "or pass --allow-degenerate to convert it anyway")
    return [f"{name}: {why} (converted anyway: --allow-degenerate)" for name, why in problems]
