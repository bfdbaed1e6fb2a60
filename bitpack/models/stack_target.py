"""Writing BitStack stacks: an HF-style safetensors directory or one GGUF file (formats/bitstack.md).

Matrices are decomposed one after another, two at a time on the two cores, and each one's
blocks are streamed to the output as soon as it is done, so memory holds a few matrices'
blocks whatever the model size. The block order, which depends on every matrix's errors,
is only known at the end: the header reserves a fixed-width order field, filled with a
placeholder, that is patched in place before the output is published (formats/bitstack.md
"The order field"). The output appears all at once or not at all.

The ``ppl`` order needs perplexity, which runs a model: the caller passes it in as
``evaluate(model) -> float`` (``bitpack.pipelines.ppl``); nothing here runs the executor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..bitstack import avd
from ..bitstack.budget import BudgetTable
from ..bitstack.order import (
    DEFAULT_MAX_PPL_PASSES,
    Reconstructions,
    error_order,
    ppl_order,
    reduced_ppl_json,
)
from ..containers.files import check_output_file, staged_path
from ..containers.hf_dir import ModelDirWriter
from ..errors import BitpackError
from ..parallel import blas_threads, ordered
from .arch import Kind
from .floats import as_float, stored_as
from .gguf_target import gguf_tokenizer_kv
from .hf_target import hf_config, hf_tokenizer
from .model import Model
from .stack_format import (
    CODEC,
    CONTAINERS,
    FORMAT_VERSION,
    KEY_CODEC,
    KEY_MATRICES,
    KEY_ORDER,
    KEY_PARAMS,
    KEY_ROW_ORDER,
    ORDER_PLACEHOLDER,
    REDUCED_PPL,
    Naming,
    encode_order,
    order_text_length,
    reference_key,
)
from .stack_plan import Item, Job, copy_job, decompose_job, plan_items, stats_for
from .stack_scoring import score_ppl
from .stack_sinks import (
    GGUFSink,
    SafetensorsSink,
    patch_gguf_order,
    write_compression_config,
)
from .stack_source import open_stack_files

DEFAULT_SHARD_BYTES = 4 * 10**9  # safetensors shards of about 4 GB, as transformers' save_pretrained
Progress = Callable[[str, int], None]


def weight_f32(value: Any) -> np.ndarray:
    """A projection's float32 weight, Ternary (codes x scale) or Float."""
    return np.asarray(value.values, dtype=np.float32)


def _gguf_kv(model: Model, params: dict[str, Any], names: list[str], order_value: np.ndarray,
             source: dict[str, Any], warnings: list[str]) -> list[tuple[str, Any, Any]]:
    arch = model.arch.name
    return [
        ("general.architecture", arch, "string"),
        ("general.name", model.name, "string"),
        *model.hparams.gguf_kv(arch),
        *gguf_tokenizer_kv(model, warnings),
        ("bitpack.format_version", FORMAT_VERSION, "u32"),
        (KEY_CODEC, CODEC, "string"),
        (KEY_PARAMS, json.dumps(params, sort_keys=True), "string"),
        (KEY_MATRICES, list(names), "[string]"),
        (KEY_ORDER, order_value, "[i32]"),
        (KEY_ROW_ORDER, "hf", "string"),
        ("bitpack.source", json.dumps(source, sort_keys=True), "string"),
        ("bitpack.version", __version__, "string"),
    ]


# -- producing and streaming ---------------------------------------------------------------

class _Run:
    """One write in progress: each item's arrays (decomposed, or copied from a source stack),
    streamed into a sink, and the block order decided once every matrix is done."""

    def __init__(self, model: Model, job: Job, items: list[Item], src: Any, *, calibration: dict[str, Any] | None,
                 svd: str, seed: int, progress: Progress | None, evaluate: Callable[[Model], float] | None,
                 max_ppl_passes: int | None) -> None:
        self.model, self.job, self.items, self.src = model, job, items, src
        self.calibration, self.svd, self.seed, self.progress = calibration, svd, seed, progress
        self.evaluate, self.max_ppl_passes = evaluate, max_ppl_passes
        self.projections = [item.entry for item in items if item.matrix is not None]
        self.names = [e.name for e in self.projections]
        self.tensors = [t for item in items for t in item.tensors]
        self.block_bytes = [avd.block_nbytes(*e.shape, job.k) for e in self.projections]
        self.extra_bytes = sum(t.nbytes for item in items for t in item.tensors if item.matrix is None) + (
            sum(4 * e.shape[1] for e in self.projections) if job.scaled else 0)
        self.steps = max(job.n_blocks - 1, 0) * len(self.names)
        self.errors: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(self.names)
        self.scored: dict[str, Any] | None = None

    def produce(self, item: Item) -> list[np.ndarray]:
        e, n_blocks = item.entry, self.job.n_blocks
        if item.matrix is None:
            return [stored_as(as_float(e.load()), item.tensors[0].dtype)]
        if self.src is not None:
            arrays = []
            for i in range(n_blocks):
                b = self.src.block(e.name, i)
                arrays += [b.signs, b.u, b.vt]
            if self.job.scaled:
                arrays.append(self.src.act_scale(e.name))
            return arrays
        w = weight_f32(e.load())
        s = probe = None
        if self.calibration is not None:
            stats = stats_for(self.calibration, e.name)
            s = avd.act_scale(stats.norm_sums, stats.n_samples)
            probe = getattr(stats, "probe", None)
        d = avd.decompose(w, n_blocks, self.job.k, act_scale=s, probe=probe, svd=self.svd, seed=self.seed)
        del w
        self.errors[item.matrix] = (d.weight_error, d.output_error)
        arrays = [a for b in d.blocks for a in (b.signs, b.u, b.vt)]
        if s is not None:
            arrays.append(np.asarray(s, dtype=np.float32))
        return arrays

    def stream(self, sink: SafetensorsSink | GGUFSink) -> None:
        with blas_threads(1):
            for item, arrays in ordered(self.items, self.produce, threads=2):
                for t, a in zip(item.tensors, arrays):
                    sink.write(t.name, a)
                    if self.progress:
                        self.progress(t.name, t.nbytes)
                del arrays
                if item.entry.release:
                    item.entry.release()
                if self.src is not None and item.matrix is not None:
                    self.src.release(item.entry.name, self.job.n_blocks)

    def decide(self, staged: Path) -> list[int]:
        """The final order: known up front, from the errors, or scored by perplexity on the
        blocks read back from the staged output."""
        job = self.job
        if job.final is not None:
            return job.final
        if job.strategy in ("weight", "output"):
            which = 0 if job.strategy == "weight" else 1
            return error_order([err[which] for err in self.errors], self.block_bytes, job.n_blocks)
        stack = open_stack_files(staged, require_order=False)  # ppl: blocks read back from the output
        try:
            runner = stack.model(stack.select(), "f32")
            cache = Reconstructions(stack.blocks_of)
            self.scored = score_ppl(runner, cache.get, self.names, job.n_blocks, self.evaluate,
                                    max_passes=self.max_ppl_passes, progress=self.progress)
            return ppl_order(self.scored["ppl"])
        finally:
            stack.close()

    def table(self, order: list[int]) -> BudgetTable:
        return BudgetTable(self.names, self.block_bytes, self.extra_bytes, self.job.n_blocks, order)


# -- the two containers --------------------------------------------------------------------

def _write_safetensors(run: _Run, out: Path, source: dict[str, Any], overwrite: bool, shard_bytes: int,
                       warnings: list[str]) -> tuple[list[str], int, BudgetTable]:
    model, job, names = run.model, run.job, run.names
    placeholder = None if job.final is not None else ORDER_PLACEHOLDER * order_text_length(run.steps, len(names))
    metadata = {
        "format": "pt", "bitpack.format_version": str(FORMAT_VERSION), KEY_CODEC: CODEC,
        KEY_PARAMS: json.dumps(job.params, sort_keys=True), KEY_MATRICES: json.dumps(names),
        KEY_ORDER: placeholder if placeholder is not None else encode_order(job.final, len(names)),
        "bitpack.source": json.dumps(source, sort_keys=True), "bitpack.version": __version__,
    }
    keys = {n: reference_key(n) for n in names}
    with ModelDirWriter(out, overwrite=overwrite, protect=[Path(f) for f in model.files]) as writer:
        writer.write_json("config.json", hf_config(model, torch_dtype="float16"))
        copy, files = hf_tokenizer(model, warnings)
        for path in copy:
            writer.copy(path)
        for name, data in files.items():
            writer.write_bytes(name, data)
        sink = SafetensorsSink(writer, run.tensors, metadata, shard_bytes, placeholder)
        try:
            run.stream(sink)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        final_order = run.decide(writer.staging)
        if placeholder is not None:
            sink.patch(encode_order(final_order, len(names)))
        table = run.table(final_order)
        write_compression_config(writer, table, keys)
        if run.scored is not None:
            writer.write_json(REDUCED_PPL, reduced_ppl_json(names, keys, run.scored))
        files = sorted(p.name for p in writer.staging.iterdir())
        writer.commit()
    return files, sum(p.stat().st_size for p in out.iterdir() if p.is_file()), table


def _write_gguf(run: _Run, out: Path, source: dict[str, Any], overwrite: bool,
                warnings: list[str]) -> tuple[list[str], int, BudgetTable]:
    model, job = run.model, run.job
    check_output_file(out, overwrite=overwrite, inputs=[Path(f) for f in model.files])
    order_value = (np.full(run.steps, -1, dtype=np.int32) if job.final is None
                   else np.asarray(job.final, dtype=np.int32))
    kv = _gguf_kv(model, job.params, run.names, order_value, source, warnings)
    sink = None
    try:
        with staged_path(out, overwrite=overwrite) as tmp:  # the order is patched in before publishing
            sink = GGUFSink(tmp, kv, run.tensors)
            run.stream(sink)
            sink.close()
            final_order = run.decide(tmp)
            if job.final is None:
                patch_gguf_order(tmp, final_order)
            table = run.table(final_order)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    return [out.name], out.stat().st_size, table


# -- the pipeline --------------------------------------------------------------------------

def write_stack(model: Model, out: str | Path, *, blocks: int | None = None, rank: int | None = None,
                calibration: dict[str, Any] | None = None, order: str | None = None, svd: str = "randomized",
                container: str | None = None, overwrite: bool = False, progress: Progress | None = None,
                evaluate: Callable[[Model], float] | None = None,
                max_ppl_passes: int | None = DEFAULT_MAX_PPL_PASSES, shard_bytes: int = DEFAULT_SHARD_BYTES,
                source_info: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Write ``model`` as a BitStack stack at ``out`` and return the conversion report.

    ``out`` ending in .gguf gives one GGUF file, anything else an HF-style directory
    (``container`` overrides). A model opened from a stack is copied block for block.
    ``calibration`` maps canonical projection names to ``ActStats`` (activation scaling, and
    the output-error order); ``order`` is output | weight | uniform | ppl (default: output
    with calibration, weight without); ``ppl`` needs ``evaluate(model) -> perplexity`` and
    runs (blocks - 1) x matrices + 1 evaluations, refused above ``max_ppl_passes``.
    """
    started = time.perf_counter()
    out = Path(out)
    container = container or ("gguf" if out.suffix.lower() == ".gguf" else "safetensors")
    if container not in CONTAINERS:
        raise BitpackError(f"unknown stack container {container!r}; choose safetensors or gguf")
    projections = [e for e in model.entries if e.kind is Kind.TERNARY]
    if not projections:
        raise BitpackError(f"{model.source}: no projections to decompose")
    warnings = list(model.warnings)
    src = getattr(model.stack, "source", None) if model.stack is not None else None
    if src is not None:
        job = copy_job(model, src, [e.name for e in projections], blocks, rank, calibration, order, warnings)
    else:
        job = decompose_job(projections, blocks, rank, svd, calibration, order, evaluate is not None, max_ppl_passes)
    items = plan_items(model, Naming(container), job.n_blocks, job.k, job.scaled)
    run = _Run(model, job, items, src, calibration=calibration, svd=svd, seed=seed, progress=progress,
               evaluate=evaluate, max_ppl_passes=max_ppl_passes)
    source = source_info or {"path": model.source}
    if container == "safetensors":
        files, written, table = _write_safetensors(run, out, source, overwrite, shard_bytes, warnings)
    else:
        files, written, table = _write_gguf(run, out, source, overwrite, warnings)
    report = {
        "output": str(out), "format": CODEC, "container": container, "files": files,
        "tensors": _summary(run), "n_tensors": len(run.tensors), "bytes_written": written,
        "seconds": round(time.perf_counter() - started, 3),
        "blocks": job.n_blocks, "rank": job.k, "scaled": job.params.get("scaled"), "svd": job.params.get("svd"),
        "order": job.strategy, "order_how": job.how, "copied": src is not None, "codec_params": job.params,
        "extra_bytes": run.extra_bytes, "min_bytes": table.min_bytes, "max_bytes": table.max_bytes,
        "errors": _errors(run), "warnings": warnings,
    }
    if run.scored is not None:
        report["ppl"] = {"original_ppl": run.scored["original_ppl"], "passes": run.scored["passes"],
                         "seconds": run.scored["seconds"]}
    return report


def _errors(run: _Run) -> dict[str, dict[str, Any]]:
    """Per projection: shape, block bytes, and the relative errors after 1..n blocks."""
    out = {}
    for e, bb, (werr, oerr) in zip(run.projections, run.block_bytes, run.errors):
        row: dict[str, Any] = {"shape": list(e.shape), "block_bytes": bb}
        if werr is not None:
            row["relative_error"] = [round(float(x), 6) for x in np.sqrt(werr[1:] / werr[0])] if werr[0] > 0 else None
        if oerr is not None:
            row["relative_output_error"] = ([round(float(x), 6) for x in np.sqrt(oerr[1:] / oerr[0])]
                                            if oerr[0] > 0 else None)
        out[e.name] = row
    return out


def _summary(run: _Run) -> list[dict[str, Any]]:
    """One row per model tensor: extras as stored, projections with their block sizes."""
    summary = []
    for item in run.items:
        e = item.entry
        if item.matrix is None:
            t = item.tensors[0]
            summary.append({"name": e.name, "codec": None, "dtype": t.dtype, "shape": list(t.shape)})
        else:
            bb = run.block_bytes[item.matrix]
            per_block = 8 * bb / (e.shape[0] * e.shape[1])
            summary.append({"name": e.name, "codec": CODEC, "shape": list(e.shape), "blocks": run.job.n_blocks,
                            "block_bytes": bb, "bits_per_weight_per_block": round(per_block, 6),
                            "bits_per_weight": round(run.job.n_blocks * per_block, 6)})
    return summary


__all__ = ["DEFAULT_SHARD_BYTES", "weight_f32", "write_stack"]
