"""Writing BitStack stacks: an HF-style safetensors directory or one GGUF file (formats/bitstack.md).

Matrices are decomposed one after another, two at a time on the two cores, and each one's
blocks are streamed to the output as soon as it is done, so memory holds a few matrices'
blocks whatever the model size. The block order, which depends on every matrix's errors,
is only known at the end: the header reserves a fixed-width order field, filled with a
placeholder, that is patched in place before the output is published (formats/bitstack.md
"The order field"). The output appears all at once or not at all.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..containers.files import check_output_file, create_temp_sibling
from ..containers.gguf_file import GGUFFile, GGUFWriter
from ..containers.gguf_kv import U32, U64, ValueType, encode_string, value_type
from ..containers.gguf_types import MAINLINE, types
from ..containers.hf_dir import COMPRESSION_CONFIG, ModelDirWriter, tokenizer_files
from ..containers.safetensors_file import DTYPES, SINGLE_NAME
from ..errors import BitpackError, ShapeError
from ..models.arch import Kind
from ..models.floats import stored_as
from ..models.gguf_target import gguf_tokenizer_kv
from ..models.hf_target import hf_config
from ..models.model import Entry, Model
from ..parallel import blas_threads, ordered
from . import avd
from .budget import BudgetTable
from .order import (
    DEFAULT_MAX_PPL_PASSES,
    Reconstructions,
    check_order,
    check_ppl_cost,
    choose_order,
    error_order,
    ppl_order,
    reduced_ppl_json,
    score_ppl,
    uniform_order,
)
from .stack_read import (
    CODEC,
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
    open_stack_files,
    order_text_length,
    reference_key,
)

DEFAULT_SHARD_BYTES = 4 * 10**9  # safetensors shards of about 4 GB, as transformers' save_pretrained
CONTAINERS = ("safetensors", "gguf")
Progress = Callable[[str, int], None]


@dataclass
class _Tensor:
    name: str
    dtype: str  # safetensors dtype name; signs are U8 (I8 in GGUF)
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * DTYPES[self.dtype].itemsize


@dataclass
class _Item:
    entry: Entry
    tensors: list[_Tensor]
    matrix: int | None = None  # index among the projections; None for embeddings, norms, head


def weight_f32(value: Any) -> np.ndarray:
    """A projection's float32 weight, Ternary (codes x scale) or Float."""
    return np.asarray(value.values, dtype=np.float32)


def _stats_for(calibration: dict[str, Any], name: str) -> Any:
    stats = calibration.get(name)
    return stats if stats is not None else calibration.get(name.removesuffix(".weight"))


def _check_calibration(projections: list[Entry], calibration: dict[str, Any]) -> bool:
    """Every projection needs statistics of its input width; returns whether all have probes."""
    missing, bad, probes = [], [], True
    for e in projections:
        stats = _stats_for(calibration, e.name)
        if stats is None:
            missing.append(e.name)
            continue
        n = e.shape[1]
        sums = np.asarray(stats.norm_sums)
        if sums.shape != (n,) or int(stats.n_samples) < 1:
            bad.append(f"{e.name}: norm_sums {list(sums.shape)}, n_samples {stats.n_samples} (needs ({n},), >= 1)")
        probe = getattr(stats, "probe", None)
        if probe is None:
            probes = False
        elif np.ndim(probe) != 2 or np.shape(probe)[1] != n:
            bad.append(f"{e.name}: probe {list(np.shape(probe))} (needs (rows, {n}))")
    if missing:
        raise BitpackError(f"calibration statistics lack {len(missing)} projections: {', '.join(missing[:4])}"
                           + (" ..." if len(missing) > 4 else ""))
    if bad:
        raise BitpackError("calibration statistics do not fit the model: " + "; ".join(bad[:4]))
    return probes


def _extra_dtype(e: Entry) -> str:
    return e.stored if e.stored in ("F32", "F16", "BF16") else "F32"  # dequantized GGUF types hold f32 values


def _plan(model: Model, naming: Naming, n_blocks: int, k: int, scaled: bool) -> list[_Item]:
    items, j = [], 0
    for e in model.entries:
        if e.kind is Kind.TERNARY:
            m, n = e.shape
            tensors = []
            for i in range(n_blocks):
                q, u, vt = naming.block(e.name, i)
                tensors += [_Tensor(q, "U8", (m * n // 8,)), _Tensor(u, "F16", (m, k)), _Tensor(vt, "F16", (k, n))]
            if scaled:
                tensors.append(_Tensor(naming.act_scale(e.name), "F32", (n,)))
            items.append(_Item(e, tensors, j))
            j += 1
        else:
            items.append(_Item(e, [_Tensor(naming.extra(e.name), _extra_dtype(e), tuple(e.shape))]))
    return items


# -- sinks ---------------------------------------------------------------------------------

def _order_needle(placeholder: str) -> bytes:
    return json.dumps({KEY_ORDER: placeholder}, separators=(",", ":"), ensure_ascii=False)[1:-1].encode()


class _SafetensorsSink:
    """Tensors in declaration order across shards of about ``shard_bytes``; each shard's header
    carries the metadata, and where its order placeholder sits is remembered for patching."""

    def __init__(self, writer: ModelDirWriter, tensors: list[_Tensor], metadata: dict[str, str],
                 shard_bytes: int, placeholder: str | None) -> None:
        groups: list[list[_Tensor]] = [[]]
        size = 0
        for t in tensors:
            if groups[-1] and size + t.nbytes > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(t)
            size += t.nbytes
        self.writer, self.groups, self.metadata, self.placeholder = writer, groups, metadata, placeholder
        n = len(groups)
        self.files = [SINGLE_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self.shard_of = {t.name: i for i, g in enumerate(groups) for t in g}
        self.sites: list[tuple[Path, int]] = []
        self._w = None
        self._idx = -1
        self.total = sum(t.nbytes for t in tensors)

    def write(self, name: str, array: np.ndarray) -> None:
        idx = self.shard_of[name]
        if idx != self._idx:
            self._finish()
            self._start(idx)
        self._w.write(name, array)

    def _start(self, idx: int) -> None:
        w = self.writer.safetensors(self.files[idx], self.metadata)
        for t in self.groups[idx]:
            w.add(t.name, t.dtype, t.shape)
        if self.placeholder is not None:
            header = w.header_bytes()
            needle = _order_needle(self.placeholder)
            at = header.find(needle)
            if at < 0 or header.find(needle, at + 1) >= 0:
                w.abort()
                raise BitpackError(f"{w.path}: cannot locate the order field in the header")
            self.sites.append((w.path, at + len(needle) - len(self.placeholder.encode()) - 1))
        self._w, self._idx = w, idx

    def _finish(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None

    def close(self) -> None:
        for idx in range(self._idx + 1, len(self.groups)):  # shards left (only when nothing was written)
            self._finish()
            self._start(idx)
        self._finish()
        if len(self.files) > 1:
            self.writer.write_index({t.name: self.files[i] for i, g in enumerate(self.groups) for t in g}, self.total)

    def abort(self) -> None:
        if self._w is not None:
            self._w.abort()
            self._w = None

    def patch(self, text: str) -> None:
        data = text.encode()
        for path, offset in self.sites:
            _patch(path, offset, data, self.placeholder.encode())


def _patch(path: Path, offset: int, data: bytes, expect: bytes) -> None:
    """Overwrite the placeholder at ``offset`` with ``data`` of the same length, in place."""
    if len(data) != len(expect):
        raise BitpackError(f"{path}: order field is {len(expect)} bytes, the order {len(data)}")
    try:
        with open(path, "r+b") as fh:
            fh.seek(offset)
            if fh.read(len(expect)) != expect:
                raise BitpackError(f"{path}: the order placeholder is not at byte {offset}")
            fh.seek(offset)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise BitpackError(f"{path}: cannot write the block order ({err.strerror or err})") from None


_GGUF_DTYPE = {"U8": "I8", "F16": "F16", "F32": "F32", "BF16": "BF16"}


class _GGUFSink:
    def __init__(self, path: Path, kv: list[tuple[str, Any, Any]], tensors: list[_Tensor]) -> None:
        types = {t.name: t for t in types(MAINLINE).values()}
        self.path = path
        self.w = GGUFWriter(path)
        try:
            for key, value, kind in kv:
                self.w.add_kv(key, value, value_type(kind) if isinstance(kind, (str, tuple)) else kind)
            for t in tensors:
                gt = types[_GGUF_DTYPE[t.dtype]]
                self.w.add_tensor(t.name, t.shape, gt.id, t.nbytes)
            self.w.write_header()
        except BaseException:
            self.w.abort()
            raise

    def write(self, name: str, array: np.ndarray) -> None:
        self.w.write_tensor(name, array)

    def close(self) -> None:
        self.w.close()

    def abort(self) -> None:
        self.w.abort()


def _patch_gguf_order(path: Path, order: list[int]) -> None:
    """Fill the INT32 array ``bitpack.bitstack.order`` (written as -1s) with the order."""
    n = len(order)
    f = GGUFFile(path)
    try:
        data_start = f.data_start
    finally:
        f.close()
    needle = encode_string(KEY_ORDER, "") + U32.pack(ValueType.ARRAY) + U32.pack(ValueType.INT32) + U64.pack(n)
    with open(path, "rb") as fh:
        header = fh.read(data_start)
    at = header.find(needle)
    if at < 0 or header.find(needle, at + 1) >= 0:
        raise BitpackError(f"{path}: cannot locate {KEY_ORDER} in the header")
    at += len(needle)
    _patch(path, at, np.asarray(order, dtype="<i4").tobytes(), np.full(n, -1, dtype="<i4").tobytes())
    g = GGUFFile(path)  # the patched header must parse and hold exactly the order
    try:
        if [int(x) for x in np.asarray(g.kv[KEY_ORDER]).reshape(-1)] != list(order):
            raise BitpackError(f"{path}: the patched order does not read back")
    finally:
        g.close()


# -- the pipeline --------------------------------------------------------------------------

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


def _write_compression_config(writer: ModelDirWriter, table: BudgetTable, keys: dict[str, str]) -> None:
    """compression_config.json streamed one configuration at a time (32 MB for an 8B model)."""
    path = writer.path_for(COMPRESSION_CONFIG)
    key_text = [json.dumps(keys[name]) for name in table.matrices]
    counts = [1] * len(key_text)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("[")
            for i in range(len(table)):
                if i:
                    counts[table.order[i - 1]] += 1
                    fh.write(",\n")
                fh.write(f'{{"memory":{table.config_bytes(i)},"layers":{{'
                         + ",".join(f"{k}:{c}" for k, c in zip(key_text, counts)) + "}}")
            fh.write("]\n")
    except OSError as err:
        raise BitpackError(f"cannot write {path} ({err.strerror or err})") from None


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
    naming = Naming(container)
    projections = [e for e in model.entries if e.kind is Kind.TERNARY]
    names = [e.name for e in projections]
    if not projections:
        raise BitpackError(f"{model.source}: no projections to decompose")
    warnings = list(model.warnings)
    src = getattr(model.stack, "source", None) if model.stack is not None else None

    if src is not None:  # stack -> stack: the blocks are copied, nothing is decomposed again
        n_blocks, k = src.n_blocks, src.k
        if blocks not in (None, n_blocks) or rank not in (None, k):
            raise BitpackError(f"{model.source} is a stack of {n_blocks} blocks of rank {k}; a stack is copied "
                               "block for block (re-decomposing needs the original model)")
        if calibration is not None or (order is not None and order != src.params.get("order")):
            raise BitpackError("a stack is copied with its own block order; calibration and --order need the "
                               "original model")
        short = [m.name for m in src.matrices if m.available < n_blocks]
        if short:
            raise BitpackError(f"{model.source}: {short[0]} has only some of its {n_blocks} blocks; cannot copy")
        scaled_tensors = src.matrices[0].act_scale is not None
        params = dict(src.params)
        if src.table is not None:
            final = check_order(src.table.order, len(names), n_blocks, f"{model.source}: block order")
            strategy, how = params.get("order") or "unknown", "copied from the source stack"
        else:
            final = uniform_order(len(names), n_blocks)
            strategy, how = "uniform", "the source stack records no order; uniform"
            params["order"] = "uniform"
            warnings.append(how)
    else:
        n_blocks = avd.DEFAULT_BLOCKS if blocks is None else blocks
        k = avd.DEFAULT_RANK if rank is None else rank
        for what, v in (("blocks", n_blocks), ("rank", k)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= avd.MAX_COUNT:
                raise BitpackError(f"--{what} must be a whole number from 1 to {avd.MAX_COUNT}, got {v!r}")
        n_blocks, k = int(n_blocks), int(k)
        if svd not in avd.SVD_METHODS:
            raise BitpackError(f"svd must be one of {', '.join(avd.SVD_METHODS)}, got {svd!r}")
        refused = []
        for e in projections:
            try:
                avd.check_shape(*e.shape)
            except ShapeError as err:
                refused.append(f"{e.name} {list(e.shape)}: {err}")
        if refused:
            raise BitpackError(f"bitstack cannot hold {len(refused)} projections: " + "; ".join(refused[:4]))
        probes = _check_calibration(projections, calibration) if calibration is not None else False
        strategy, how = choose_order(order, calibrated=probes, can_evaluate=evaluate is not None)
        if strategy == "ppl":
            check_ppl_cost(len(names), n_blocks, max_ppl_passes)
        scaled_tensors = calibration is not None
        params = {"k": k, "niter": n_blocks, "scaled": scaled_tensors, "folded": False,
                  "svd_sign": "max-abs-positive", "scale_o_proj": True, "order": strategy, "svd": svd}
        final = uniform_order(len(names), n_blocks) if strategy == "uniform" else None

    items = _plan(model, naming, n_blocks, k, scaled_tensors)
    tensors = [t for item in items for t in item.tensors]
    block_bytes = [avd.block_nbytes(*e.shape, k) for e in projections]
    extra_bytes = sum(t.nbytes for item in items for t in item.tensors if item.matrix is None) + (
        sum(4 * e.shape[1] for e in projections) if scaled_tensors else 0)
    steps = max(n_blocks - 1, 0) * len(names)
    source = source_info or {"path": model.source}
    errors: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(names)

    def produce(item: _Item) -> list[np.ndarray]:
        e = item.entry
        if item.matrix is None:
            return [stored_as(e.load(), item.tensors[0].dtype)]
        if src is not None:
            arrays = []
            for i in range(n_blocks):
                b = src.block(e.name, i)
                arrays += [b.signs, b.u, b.vt]
            if scaled_tensors:
                arrays.append(src.act_scale(e.name))
            return arrays
        w = weight_f32(e.load())
        s = probe = None
        if calibration is not None:
            stats = _stats_for(calibration, e.name)
            s = avd.act_scale(stats.norm_sums, stats.n_samples)
            probe = getattr(stats, "probe", None)
        d = avd.decompose(w, n_blocks, k, act_scale=s, probe=probe, svd=svd, seed=seed)
        del w
        errors[item.matrix] = (d.weight_error, d.output_error)
        arrays = [a for b in d.blocks for a in (b.signs, b.u, b.vt)]
        if s is not None:
            arrays.append(np.asarray(s, dtype=np.float32))
        return arrays

    def stream(sink) -> None:
        with blas_threads(1):
            _stream(sink)

    def _stream(sink) -> None:
        for item, arrays in ordered(items, produce, threads=2):
            for t, a in zip(item.tensors, arrays):
                sink.write(t.name, a)
                if progress:
                    progress(t.name, t.nbytes)
            del arrays
            if item.entry.release:
                item.entry.release()
            if src is not None and item.matrix is not None:
                src.release(item.entry.name, n_blocks)

    scored: dict[str, Any] | None = None

    def decide(staged: Path) -> list[int]:
        nonlocal scored
        if final is not None:
            return final
        if strategy in ("weight", "output"):
            which = 0 if strategy == "weight" else 1
            return error_order([err[which] for err in errors], block_bytes, n_blocks)
        stack = open_stack_files(staged, require_order=False)  # ppl: blocks read back from the output
        try:
            runner = stack.model(stack.select(), "f32")
            cache = Reconstructions(stack.blocks_of)
            scored = score_ppl(runner, cache.get, names, n_blocks, evaluate, max_passes=max_ppl_passes,
                               progress=progress)
            return ppl_order(scored["ppl"])
        finally:
            stack.close()

    text_len = order_text_length(steps, len(names))
    if container == "safetensors":
        placeholder = None if final is not None else ORDER_PLACEHOLDER * text_len
        metadata = {
            "format": "pt", "bitpack.format_version": str(FORMAT_VERSION), KEY_CODEC: CODEC,
            KEY_PARAMS: json.dumps(params, sort_keys=True), KEY_MATRICES: json.dumps(names),
            KEY_ORDER: placeholder if placeholder is not None else encode_order(final, len(names)),
            "bitpack.source": json.dumps(source, sort_keys=True), "bitpack.version": __version__,
        }
        with ModelDirWriter(out, overwrite=overwrite, protect=[Path(f) for f in model.files]) as writer:
            writer.write_json("config.json", hf_config(model, torch_dtype="float16"))
            if model.tokenizer_dir is not None:
                for path in tokenizer_files(model.tokenizer_dir):
                    writer.copy(path)
            else:
                warnings.append("the source carries no HF tokenizer files; the stack directory has none")
            sink = _SafetensorsSink(writer, tensors, metadata, shard_bytes, placeholder)
            try:
                stream(sink)
                sink.close()
            except BaseException:
                sink.abort()
                raise
            final_order = decide(writer.staging)
            if placeholder is not None:
                sink.patch(encode_order(final_order, len(names)))
            table = BudgetTable(names, block_bytes, extra_bytes, n_blocks, final_order)
            _write_compression_config(writer, table, {n: reference_key(n) for n in names})
            if scored is not None:
                writer.write_json(REDUCED_PPL, reduced_ppl_json(names, {n: reference_key(n) for n in names}, scored))
            files = sorted(p.name for p in writer.staging.iterdir())
            writer.commit()
        written = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    else:
        check_output_file(out, overwrite=overwrite, inputs=[Path(f) for f in model.files])
        order_value = (np.full(steps, -1, dtype=np.int32) if final is None
                       else np.asarray(final, dtype=np.int32))
        kv = _gguf_kv(model, params, names, order_value, source, warnings)
        tmp = create_temp_sibling(out)
        sink = None
        try:
            sink = _GGUFSink(tmp, kv, tensors)
            stream(sink)
            sink.close()
            final_order = decide(tmp)
            if final is None:
                _patch_gguf_order(tmp, final_order)
            table = BudgetTable(names, block_bytes, extra_bytes, n_blocks, final_order)
            if not overwrite and out.exists():
                raise BitpackError(f"{out} appeared while writing; not replacing it")
            os.replace(tmp, out)
        except BaseException:
            if sink is not None:
                sink.abort()
            tmp.unlink(missing_ok=True)
            raise
        written = out.stat().st_size
        files = [out.name]

    report_errors = {}
    for e, bb, (werr, oerr) in zip(projections, block_bytes, errors):
        row: dict[str, Any] = {"shape": list(e.shape), "block_bytes": bb}
        if werr is not None:
            row["relative_error"] = [round(float(x), 6) for x in np.sqrt(werr[1:] / werr[0])] if werr[0] > 0 else None
        if oerr is not None:
            row["relative_output_error"] = ([round(float(x), 6) for x in np.sqrt(oerr[1:] / oerr[0])]
                                            if oerr[0] > 0 else None)
        report_errors[e.name] = row
    summary = []
    for item in items:
        e = item.entry
        if item.matrix is None:
            t = item.tensors[0]
            summary.append({"name": e.name, "codec": None, "dtype": t.dtype, "shape": list(t.shape)})
        else:
            bb = block_bytes[item.matrix]
            per_block = 8 * bb / (e.shape[0] * e.shape[1])
            summary.append({"name": e.name, "codec": CODEC, "shape": list(e.shape), "blocks": n_blocks,
                            "block_bytes": bb, "bits_per_weight_per_block": round(per_block, 6),
                            "bits_per_weight": round(n_blocks * per_block, 6)})
    report = {
        "output": str(out), "format": CODEC, "container": container, "files": files,
        "tensors": summary, "n_tensors": len(tensors), "bytes_written": written, "seconds": round(time.perf_counter() - started, 3),
        "blocks": n_blocks, "rank": k, "scaled": params.get("scaled"), "svd": params.get("svd"),
        "order": strategy, "order_how": how, "copied": src is not None, "codec_params": params,
        "extra_bytes": extra_bytes, "min_bytes": table.min_bytes, "max_bytes": table.max_bytes,
        "errors": report_errors, "warnings": warnings,
    }
    if scored is not None:
        report["ppl"] = {"original_ppl": scored["original_ppl"], "passes": scored["passes"],
                         "seconds": scored["seconds"]}
    return report


__all__ = ["DEFAULT_SHARD_BYTES", "weight_f32", "write_stack"]
