"""Reading BitStack stacks at a memory budget (spec/bitstack.md §4.4-§5; formats/bitstack.md).

Three layouts are read through one path:

* bitpack's safetensors directory (``__metadata__["bitpack.codec"] == "bitstack"``);
* bitpack's GGUF file (KV ``bitpack.codec == "bitstack"``);
* the reference directory (xinghaow99/BitStack ``save_pretrained`` output: no bitpack
  metadata, scales folded into the norms, ``compression_config.json`` holds the order).

Opening parses headers and checks every tensor's dtype and shape against the config and the
block count before anything is returned. The selected blocks are memory-mapped and read
only when a projection is loaded; ``Model.stack`` (a :class:`~bitpack.bitstack.budget.Selection`) counts
the distinct bytes read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bitstack import avd
from ..bitstack.budget import BudgetTable
from ..bitstack.order import check_order
from ..containers.hf_dir import COMPRESSION_CONFIG, read_config, tokenizer_files
from ..errors import BitpackError
from ..jsonsafe import check_depth
from .arch import Kind, slots
from .gguf_source import gguf_architecture
from .hf_source import hf_architecture
from .hparams import HParams
from .model import Model
from .stack_format import (
    CODEC,
    EXTRA_DTYPES,
    KEY_CODEC,
    KEY_MATRICES,
    KEY_ORDER,
    KEY_PARAMS,
    KEY_ROW_ORDER,
    ORDER_PLACEHOLDER,
    Naming,
    projection_names,
)
from .stack_model import Matrix, OpenStack
from .stack_reference import reference_params, reference_table
from .stack_store import Store, check_tensor, open_store

# -- opening -------------------------------------------------------------------------------

def _json_param(meta: dict[str, Any], key: str, where: str) -> Any:
    try:
        return json.loads(check_depth(meta[key], f"{where}: {key}"))
    except (TypeError, ValueError):
        raise BitpackError(f"{where}: {key} is not valid JSON") from None


def _kind(store: Store, path: Path) -> str:
    if store.metadata.get(KEY_CODEC) == CODEC:
        return "bitpack"
    if store.metadata.get(KEY_CODEC) is not None:
        raise BitpackError(f"{path}: bitpack.codec is {store.metadata[KEY_CODEC]!r}, not a BitStack stack")
    folder = path if path.is_dir() else path.parent
    if store.container == "safetensors" and any(n.endswith(".qweight_0") for n in store.names()):
        if not (folder / "config.json").is_file():
            raise BitpackError(f"{path}: a reference BitStack layout needs its config.json")
        return "reference"
    raise BitpackError(f"{path}: not a BitStack stack (no bitpack.codec 'bitstack' and no qweight_0 tensors)")


def open_stack_files(path: str | Path, *, require_order: bool = True) -> OpenStack:
    """Parse and check a stack without choosing blocks (see :func:`open_stack`)."""
    path = Path(path)
    if not path.exists():
        raise BitpackError(f"{path} does not exist")
    store = open_store(path)
    try:
        return _open(path, store, require_order)
    except BaseException:
        store.close()
        raise


def _open(path: Path, store: Store, require_order: bool) -> OpenStack:
    where = str(path)
    layout = _kind(store, path)
    naming = Naming(store.container)
    folder = path if path.is_dir() else path.parent
    head = _hf_header(store, folder, where) if store.container == "safetensors" else _gguf_header(store, where)
    if layout == "bitpack":
        params = _bitpack_params(store, where)
        k, n_blocks = params["k"], params["niter"]
    else:
        params, k, n_blocks = reference_params(path, store, head.hparams, head.arch, naming, where)
    used: set[str] = set()
    matrices = _matrices(store, naming, head, k, n_blocks, used, where)
    _check_scales(matrices, layout, params, where)
    extras = _extras(store, naming, head, used, where)
    stack = OpenStack(path, store, layout, naming, head.arch, head.hparams, k, n_blocks, params, matrices, extras,
                      None, config=head.config, tokenizer_dir=head.tokenizer_dir, tokenizer_kv=head.tokenizer_kv,
                      warnings=head.warnings, files=head.files)
    stack.table = _table(stack, folder, require_order, where)
    return stack


@dataclass
class _Header:
    """What a stack's container says about the model, before any tensor is checked."""

    arch: Any
    hparams: HParams
    warnings: list[str]
    files: list[Path]
    config: dict[str, Any] | None = None
    tokenizer_dir: Path | None = None
    tokenizer_kv: dict[str, Any] = field(default_factory=dict)


def _hf_header(store: Store, folder: Path, where: str) -> _Header:
    config, dups = read_config(folder)
    hp = HParams.from_config(config, where)
    arch = hf_architecture(hp, store.names(), where, config)
    # every file a copy reads: config.json, the tokenizer files it carries over, the reference order
    files = [*store.files, folder / "config.json", *tokenizer_files(folder),
             *(p for p in (folder / COMPRESSION_CONFIG,) if p.is_file())]
    return _Header(arch, hp, list(store.warnings) + [d.message for d in dups], files, config=config,
                   tokenizer_dir=folder if tokenizer_files(folder) else None)


def _gguf_header(store: Store, where: str) -> _Header:
    kv = store.metadata
    arch = gguf_architecture(kv.get("general.architecture"), where)
    hp = HParams.from_gguf(kv, arch.name, arch.hidden_act, "output.weight" not in set(store.names()), where)
    if kv.get(KEY_ROW_ORDER, "hf") != "hf":
        raise BitpackError(f"{where}: {KEY_ROW_ORDER} is {kv.get(KEY_ROW_ORDER)!r}; bitpack stacks keep HF row order")
    return _Header(arch, hp, list(store.warnings), list(store.files),
                   tokenizer_kv={k: (v, store.f.kv_types[k]) for k, v in kv.items() if k.startswith("tokenizer.")})


def _bitpack_params(store: Store, where: str) -> dict[str, Any]:
    params = _json_param(store.metadata, KEY_PARAMS, where) if KEY_PARAMS in store.metadata else None
    if not isinstance(params, dict):
        raise BitpackError(f"{where}: {KEY_PARAMS} is missing or not a JSON object")
    for key in ("k", "niter"):
        value = params.get(key)
        if type(value) is not int or value < 1 or value > avd.MAX_COUNT:
            raise BitpackError(f"{where}: {KEY_PARAMS} {key} is {value!r}; expected a whole number 1..{avd.MAX_COUNT}")
    return params


def _matrices(store: Store, naming: Naming, head: _Header, k: int, n_blocks: int, used: set[str],
              where: str) -> list[Matrix]:
    """Every projection's block tensors checked against the shapes the config implies."""
    names = set(store.names())
    hp = head.hparams
    matrices = []
    for name in projection_names(head.arch, hp.n_layers, hp.tied):
        m_, n_ = hp.ternary_shape(name)
        try:
            avd.check_shape(m_, n_)
        except BitpackError as err:
            raise BitpackError(f"{where}: {name}: {err}") from None
        available, missing = n_blocks, None
        for i in range(n_blocks):
            tensors = naming.block(name, i)
            want = [(naming.sign_dtype, (m_ * n_ // 8,)), ("F16", (m_, k)), ("F16", (k, n_))]
            present = [t in names for t in tensors]
            if not all(present) and available == n_blocks:
                available, missing = i, tensors[present.index(False)]
            for t, ok, (dtype, shape) in zip(tensors, present, want):
                if not ok:
                    continue
                if i > available:
                    raise BitpackError(f"{where}: {t} is present but {missing} (an earlier block) is missing")
                check_tensor(store, t, dtype, shape, where)
                used.add(t)
        stray = f"{naming.block(name, n_blocks)[0]}"
        if stray in names:
            raise BitpackError(f"{where}: {stray} is a block beyond the {n_blocks} the stack declares")
        scale_name = naming.act_scale(name)
        has_scale = scale_name in names
        if has_scale:
            check_tensor(store, scale_name, "F32", (n_,), where)
            used.add(scale_name)
        matrices.append(Matrix(name, (m_, n_), avd.block_nbytes(m_, n_, k), available,
                               scale_name if has_scale else None, missing))
    return matrices


def _check_scales(matrices: list[Matrix], layout: str, params: dict[str, Any], where: str) -> None:
    """act_scale tensors: all or none, and as the parameters say."""
    scaled_flags = {m.act_scale is not None for m in matrices}
    if len(scaled_flags) > 1:
        raise BitpackError(f"{where}: some matrices have an act_scale tensor and others do not")
    has_scales = scaled_flags.pop() if scaled_flags else False
    if layout == "bitpack" and not params.get("folded") and bool(params.get("scaled")) != has_scales:
        raise BitpackError(f"{where}: codec_params scaled is {params.get('scaled')} but act_scale tensors are "
                           f"{'present' if has_scales else 'absent'}")
    if layout == "reference" and has_scales:
        raise BitpackError(f"{where}: act_scale tensors without bitpack metadata; not a layout bitpack knows")


def _extras(store: Store, naming: Naming, head: _Header, used: set[str],
            where: str) -> list[tuple[str, Kind, str, str, tuple[int, ...], int]]:
    """Everything else (embeddings, head, norms) as stored; then no tensor may be left over."""
    names = set(store.names())
    hp = head.hparams
    extras = []
    for canonical, slot, layer in slots(head.arch, hp.n_layers, hp.tied):
        if slot.kind is Kind.TERNARY:
            continue
        tensor = naming.extra(canonical)
        if store.container == "safetensors" and tensor not in names:  # 1bitLLM's sub-norm names
            tensor = next((h.format(i=layer) for h in slot.hf if h.format(i=layer) in names), tensor)
        if tensor not in names:
            raise BitpackError(f"{where}: missing tensor {tensor}")
        dtype, shape, nbytes = store.info(tensor)
        if dtype not in EXTRA_DTYPES:
            raise BitpackError(f"{where}: {tensor} is {dtype}; a stack keeps embeddings and norms as F32, F16 or BF16")
        if not hp.float_shape_fits(canonical, shape):
            raise BitpackError(f"{where}: {tensor} has shape {list(shape)}, expected {list(hp.float_shape(canonical))} "
                               "from the config")
        extras.append((canonical, slot.kind, tensor, dtype, shape, nbytes))
        used.add(tensor)
    stray = sorted(names - used)
    if hp.tied and "lm_head.weight" in stray:
        stray.remove("lm_head.weight")
        head.warnings.append(f"{where}: tied model carries an lm_head.weight; it is not used")
    if stray:
        raise BitpackError(f"{where}: tensors a {head.arch.name} stack does not have: {', '.join(stray[:6])}"
                           + (f" and {len(stray) - 6} more" if len(stray) > 6 else ""))
    return extras


def _table(stack: OpenStack, folder: Path, require_order: bool, where: str) -> BudgetTable | None:
    """The stack's budget table: bitpack's order field, or the reference's compression_config.json."""
    if stack.layout == "bitpack":
        return _bitpack_table(stack, require_order, where)
    return reference_table(stack, folder / COMPRESSION_CONFIG, where)


def _bitpack_table(stack: OpenStack, require_order: bool, where: str) -> BudgetTable | None:
    names = [m.name for m in stack.matrices]
    meta = stack.store.metadata
    listed = meta.get(KEY_MATRICES)
    if isinstance(listed, str):
        listed = _json_param(meta, KEY_MATRICES, where)
    if listed is not None and (not isinstance(listed, (list, tuple)) or list(listed) != names):
        raise BitpackError(f"{where}: {KEY_MATRICES} does not list this model's projections in model order")
    text = meta.get(KEY_ORDER)
    if text is None:
        if require_order:
            raise BitpackError(f"{where}: the stack has no {KEY_ORDER}")
        return None
    if isinstance(text, str):
        if text.startswith(ORDER_PLACEHOLDER):
            if require_order:
                raise BitpackError(f"{where}: {KEY_ORDER} was never filled in (an interrupted writer?)")
            return None
        try:
            order = json.loads(check_depth(text, f"{where}: {KEY_ORDER}"))
        except ValueError:
            raise BitpackError(f"{where}: {KEY_ORDER} is not a JSON list") from None
    else:  # GGUF: an INT32 array
        order = np.asarray(text) if isinstance(text, (list, tuple, np.ndarray)) else np.asarray([])
        if order.dtype.kind not in "iu":
            raise BitpackError(f"{where}: {KEY_ORDER} is not an integer array")
        if order.size and (order < 0).all():
            if require_order:
                raise BitpackError(f"{where}: {KEY_ORDER} was never filled in (an interrupted writer?)")
            return None
    order = check_order(order, len(names), stack.n_blocks, f"{where}: {KEY_ORDER}")
    return BudgetTable(names, stack.block_bytes(), stack.extra_bytes, stack.n_blocks, order)


# -- public API ----------------------------------------------------------------------------

def open_stack(path: str | Path, *, budget: int | str | None = None, blocks: int | dict[str, int] | None = None,
               mode: str = "f32") -> Model:
    """A model whose projections load as ``Float(reconstruct(first n blocks), "F32")``.

    ``budget`` (bytes, or a size like "300MB") picks the largest configuration of the stack's
    table that fits (spec §4.4); ``blocks`` gives a uniform count or per-matrix counts
    (canonical names, or the reference's ``layer.{L}.self_attn.q_proj`` keys); neither loads
    every block. ``mode="reference-f16"`` reconstructs with the reference loader's f16 sums.
    ``model.stack`` is the :class:`~bitpack.bitstack.budget.Selection` (blocks, bytes, bytes_loaded, table).
    """
    stack = open_stack_files(path)
    try:
        selection = stack.select(budget=budget, blocks=blocks)
        return stack.model(selection, mode)
    except BaseException:
        stack.close()
        raise


def is_stack(path: str | Path) -> bool:
    """Whether ``path`` is a BitStack stack (bitpack's, either container, or the reference's)."""
    path = Path(path)
    try:
        if not path.exists():
            return False
        store = open_store(path)
    except BitpackError:
        return False
    try:
        _kind(store, path)
        return True
    except BitpackError:
        return False
    finally:
        store.close()


def stack_report(path: str | Path) -> dict[str, Any]:
    """What ``inspect`` shows for a stack: blocks per matrix, the budget table, parameters."""
    stack = open_stack_files(path)
    try:
        table = stack.table
        report: dict[str, Any] = {
            "path": str(stack.path), "container": stack.container, "layout": stack.layout,
            "architecture": stack.arch.name, "hparams": stack.hparams.as_dict(),
            "k": stack.k, "niter": stack.n_blocks, "scaled": stack.params.get("scaled"),
            "folded": stack.params.get("folded"), "order": stack.params.get("order"),
            "svd": stack.params.get("svd"), "codec_params": stack.params,
            "extra_bytes": stack.extra_bytes,
            "matrices": [{"name": m.name, "shape": list(m.shape), "block_bytes": m.block_bytes,
                          "bits_per_weight_per_block": round(8 * m.block_bytes / (m.shape[0] * m.shape[1]), 6),
                          "blocks": m.available} for m in stack.matrices],
            "blocks": {m.name: m.available for m in stack.matrices},
            "warnings": list(stack.warnings),
        }
        if table is not None:
            report.update(min_bytes=table.min_bytes, max_bytes=table.max_bytes,
                          step_bytes=[stack.matrices[j].block_bytes for j in table.order],
                          step_matrices=[stack.matrices[j].name for j in table.order],
                          budget_table=table.summary())
        else:
            report.update(min_bytes=stack.bytes_for({m.name: 1 for m in stack.matrices}),
                          max_bytes=stack.bytes_for({m.name: stack.n_blocks for m in stack.matrices}),
                          step_bytes=None, step_matrices=None, budget_table=None)
        return report
    finally:
        stack.close()


__all__ = ["OpenStack", "is_stack", "open_stack", "open_stack_files", "stack_report"]
