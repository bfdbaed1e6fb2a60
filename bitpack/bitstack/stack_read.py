"""Reading BitStack stacks at a memory budget (spec/bitstack.md §4.4-§5; formats/bitstack.md).

Three layouts are read through one path:

* bitpack's safetensors directory (``__metadata__["bitpack.codec"] == "bitstack"``);
* bitpack's GGUF file (KV ``bitpack.codec == "bitstack"``);
* the reference directory (xinghaow99/BitStack ``save_pretrained`` output: no bitpack
  metadata, scales folded into the norms, ``compression_config.json`` holds the order).

Opening parses headers and checks every tensor's dtype and shape against the config and the
block count before anything is returned. The selected blocks are memory-mapped and read
only when a projection is loaded; ``Model.stack`` (a :class:`~.budget.Selection`) counts
the distinct bytes read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..containers.gguf_file import GGUFFile
from ..containers.hf_dir import COMPRESSION_CONFIG, read_config, tokenizer_files
from ..containers.safetensors_file import Checkpoint
from ..errors import BitpackError
from ..models.arch import Kind, architecture, decide, hf_name, slots
from ..models.floats import STORAGE
from ..models.hparams import HParams
from ..models.model import Entry, Float, Model
from . import avd
from .budget import (
    BudgetTable,
    Selection,
    explicit_counts,
    parse_size,
    select,
    table_from_configs,
    uniform_counts,
)
from .order import check_order

CODEC = "bitstack"
FORMAT_VERSION = 1
KEY_CODEC = "bitpack.codec"
KEY_PARAMS = "bitpack.codec_params"
KEY_MATRICES = "bitpack.bitstack.matrices"
KEY_ORDER = "bitpack.bitstack.order"
KEY_ROW_ORDER = "bitpack.bitstack.row_order"
REDUCED_PPL = "reduced_ppl_average.json"
ORDER_PLACEHOLDER = "?"  # the order field's filler until the writer patches it in


# -- names and encodings shared with the writer --------------------------------------------

@dataclass(frozen=True)
class Naming:
    """Tensor names of a stack in one container (spec §5.1 for safetensors)."""

    container: str  # "safetensors" or "gguf"

    def prefix(self, canonical: str) -> str:
        name = hf_name(canonical) if self.container == "safetensors" else canonical
        return name.removesuffix(".weight")

    def extra(self, canonical: str) -> str:
        return hf_name(canonical) if self.container == "safetensors" else canonical

    def block(self, canonical: str, i: int) -> tuple[str, str, str]:
        p = self.prefix(canonical)
        if self.container == "safetensors":
            return f"{p}.qweight_{i}", f"{p}.u_{i}", f"{p}.vt_{i}"
        return f"{p}.qweight.{i}", f"{p}.u.{i}", f"{p}.vt.{i}"

    def act_scale(self, canonical: str) -> str:
        return self.prefix(canonical) + ".act_scale"

    @property
    def sign_dtype(self) -> str:
        return "U8" if self.container == "safetensors" else "I8"


def reference_key(canonical: str) -> str:
    """The reference's compression_config.json key: ``layer.{L}.self_attn.q_proj``."""
    return "layer." + hf_name(canonical).removeprefix("model.layers.").removesuffix(".weight")


def encode_order(order: list[int], n_matrices: int) -> str:
    """The order as fixed-width JSON: every index right-aligned to the width of the largest,
    so the text's length depends only on the number of steps and matrices."""
    width = len(str(max(n_matrices - 1, 0)))
    return "[" + ",".join(f"{j:>{width}d}" for j in order) + "]"


def order_text_length(n_steps: int, n_matrices: int) -> int:
    return len(encode_order([0] * n_steps, n_matrices))


def projection_names(arch, n_layers: int, tied: bool) -> list[str]:
    return [name for name, slot, _ in slots(arch, n_layers, tied) if slot.kind is Kind.TERNARY]


# -- container access ----------------------------------------------------------------------

class _Store:
    """One container's tensors: dtype names as safetensors spells them, plus GGUF's I8."""

    container: str
    files: list[Path]
    metadata: dict[str, Any]

    def names(self) -> list[str]: ...
    def info(self, name: str) -> tuple[str, tuple[int, ...], int]: ...
    def raw(self, name: str) -> np.ndarray: ...
    def release(self, name: str) -> None: ...
    def close(self) -> None: ...


class _SafetensorsStore(_Store):
    container = "safetensors"

    def __init__(self, path: Path) -> None:
        self.ckpt = Checkpoint(path)
        self.files = list(self.ckpt.files) + ([self.ckpt.index_path] if self.ckpt.index_path else [])
        self.metadata = dict(self.ckpt.metadata)
        self.warnings = list(self.ckpt.warnings)

    def names(self) -> list[str]:
        return self.ckpt.names()

    def info(self, name: str) -> tuple[str, tuple[int, ...], int]:
        i = self.ckpt.info(name)
        return i.dtype, tuple(i.shape), i.nbytes

    def raw(self, name: str) -> np.ndarray:
        return self.ckpt.raw(name)

    def release(self, name: str) -> None:
        self.ckpt.release(name)

    def close(self) -> None:
        self.ckpt.close()


class _GGUFStore(_Store):
    container = "gguf"
    _VIEW: ClassVar[dict[str, np.dtype]] = {"I8": np.dtype("u1"), **STORAGE}

    def __init__(self, path: Path) -> None:
        self.f = GGUFFile(path)
        self.files = [path]
        self.metadata = dict(self.f.kv)
        self.warnings = list(self.f.warnings)

    def names(self) -> list[str]:
        return [t.name for t in self.f.tensors]

    def info(self, name: str) -> tuple[str, tuple[int, ...], int]:
        t = self.f.tensor(name)
        return self.f.type_name(t), tuple(t.shape), t.nbytes if t.nbytes is not None else -1

    def raw(self, name: str) -> np.ndarray:
        dtype, shape, _ = self.info(name)
        if dtype not in self._VIEW:
            raise BitpackError(f"{self.files[0]}: {name} is {dtype}; a stack holds I8, F16, BF16 and F32 tensors")
        return self.f.raw(name).view(self._VIEW[dtype]).reshape(shape)

    def release(self, name: str) -> None:
        self.f.release(name)

    def close(self) -> None:
        self.f.close()


def _store(path: Path) -> _Store:
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(4)
        if head == b"GGUF":
            return _GGUFStore(path)
    return _SafetensorsStore(path)


# -- the opened stack ----------------------------------------------------------------------

@dataclass
class Matrix:
    name: str  # canonical
    shape: tuple[int, int]
    block_bytes: int
    available: int  # blocks present, counting from 0 without a gap
    act_scale: str | None  # tensor name, when stored
    missing: str | None = None  # the first absent block tensor


@dataclass
class OpenStack:
    path: Path
    store: _Store
    layout: str  # "bitpack" or "reference"
    naming: Naming
    arch: Any
    hparams: HParams
    k: int
    n_blocks: int
    params: dict[str, Any]
    matrices: list[Matrix]
    extras: list[tuple[str, Kind, str, str, tuple[int, ...], int]]  # canonical, kind, tensor, dtype, shape, nbytes
    table: BudgetTable | None
    config: dict[str, Any] | None = None
    tokenizer_dir: Path | None = None
    tokenizer_kv: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def container(self) -> str:
        return self.store.container

    @property
    def extra_bytes(self) -> int:
        return sum(x[5] for x in self.extras) + sum(
            4 * m.shape[1] for m in self.matrices if m.act_scale is not None)

    @property
    def order(self) -> list[int] | None:
        return None if self.table is None else self.table.order

    def matrix(self, name: str) -> Matrix:
        for m in self.matrices:
            if m.name == name:
                return m
        raise KeyError(name)

    # -- blocks ---------------------------------------------------------------------
    def block(self, name: str, i: int, selection: Selection | None = None) -> avd.Block:
        mat = self.matrix(name)
        if i >= mat.available:
            raise BitpackError(f"{self.path}: block {i} of {name} is not in the stack "
                               f"(missing tensor {mat.missing}); it has blocks 0..{mat.available - 1}")
        parts = []
        for tensor in self.naming.block(name, i):
            arr = self.store.raw(tensor)
            if selection is not None:
                selection.touch(tensor, arr.nbytes)
            parts.append(arr)
        return avd.Block(parts[0].reshape(-1).view(np.uint8), parts[1], parts[2]).check_finite(
            f"{self.path}: block {i} of {name}")

    def act_scale(self, name: str, selection: Selection | None = None) -> np.ndarray | None:
        tensor = self.matrix(name).act_scale
        if tensor is None:
            return None
        arr = self.store.raw(tensor)
        if selection is not None:
            selection.touch(tensor, arr.nbytes)
        if not (np.isfinite(arr).all() and (arr > 0).all()):
            raise BitpackError(f"{self.path}: {tensor} holds values that are not finite and positive")
        return arr

    def release(self, name: str, n: int) -> None:
        mat = self.matrix(name)
        for i in range(min(n, mat.available)):
            for tensor in self.naming.block(name, i):
                self.store.release(tensor)
        if mat.act_scale:
            self.store.release(mat.act_scale)

    def blocks_of(self, name: str) -> tuple[list[avd.Block], tuple[int, int], np.ndarray | None]:
        """Every available block of ``name`` (views), its shape and act_scale (ppl scoring)."""
        mat = self.matrix(name)
        return [self.block(name, i) for i in range(mat.available)], mat.shape, self.act_scale(name)

    # -- selection ------------------------------------------------------------------
    def block_bytes(self) -> list[int]:
        return [m.block_bytes for m in self.matrices]

    def bytes_for(self, counts: dict[str, int]) -> int:
        return self.extra_bytes + sum(m.block_bytes * counts[m.name] for m in self.matrices)

    def aliases(self) -> dict[str, str]:
        out = {}
        for m in self.matrices:
            out[reference_key(m.name)] = m.name
            out[m.name.removesuffix(".weight")] = m.name
            out[hf_name(m.name)] = m.name
            out[hf_name(m.name).removesuffix(".weight")] = m.name
        return out

    def select(self, *, budget: int | str | None = None, blocks: int | dict[str, int] | None = None) -> Selection:
        names = [m.name for m in self.matrices]
        config = None
        if budget is not None and blocks is not None:
            raise BitpackError("give a budget or block counts, not both")
        if budget is not None:
            if self.table is None:
                raise BitpackError(f"{self.path}: the stack records no block order (no {COMPRESSION_CONFIG}); "
                                   "open it with explicit block counts instead of a budget")
            budget = parse_size(budget)
            config = select(self.table, budget)
            counts, how = self.table.blocks(config), "budget"
        elif isinstance(blocks, dict):
            counts, how = explicit_counts(names, blocks, self.n_blocks, self.aliases()), "explicit"
        elif blocks is not None:
            counts, how = uniform_counts(names, blocks, self.n_blocks), "uniform"
        else:
            counts, how = {n: self.n_blocks for n in names}, "all"
            config = len(self.table) - 1 if self.table is not None and self.table.max_bytes == self.bytes_for(counts) else None
        short = [(m, counts[m.name]) for m in self.matrices if counts[m.name] > m.available]
        if short:
            m, n = short[0]
            raise BitpackError(f"{self.path}: the selection needs {n} blocks of {m.name} but block {m.available} "
                               f"(tensor {m.missing}) is missing" + (f"; {len(short) - 1} more matrices are short"
                                                                     if len(short) > 1 else ""))
        cfg_bytes = self.table.config_bytes(config) if config is not None else self.bytes_for(counts)
        return Selection(budget_bytes=budget if budget is not None else None, config=config, config_bytes=cfg_bytes,
                         blocks=counts, table=self.table, extra_bytes=self.extra_bytes, how=how, k=self.k,
                         n_blocks=self.n_blocks, params=dict(self.params), source=self)

    def model(self, selection: Selection, mode: str = "f32") -> Model:
        entries = []
        by_name = {m.name: m for m in self.matrices}
        extras = {x[0]: x for x in self.extras}
        for canonical, slot, _ in slots(self.arch, self.hparams.n_layers, self.hparams.tied):
            if slot.kind is Kind.TERNARY:
                m = by_name[canonical]
                entries.append(Entry(canonical, Kind.TERNARY, m.shape, "bitstack", self._loader(m, selection, mode),
                                     source_name=self.naming.prefix(canonical), source_params={"blocks": selection.blocks[canonical]},
                                     release=lambda c=canonical: self.release(c, selection.blocks[c])))
            elif canonical in extras:
                _, kind, tensor, dtype, shape, nbytes = extras[canonical]
                entries.append(Entry(canonical, kind, shape, dtype, self._float_loader(tensor, dtype, nbytes, selection),
                                     source_name=tensor, release=lambda t=tensor: self.store.release(t)))
        desc = f"bitstack {self.layout} ({self.n_blocks} blocks, k={self.k}"
        desc += f", {selection.how} {selection.config_bytes} bytes)" if selection.how != "all" else ", all blocks)"
        return Model(source=str(self.path), container=self.container, layout=desc, arch=self.arch,
                     hparams=self.hparams, entries=entries, files=list(self.files), config=self.config,
                     tokenizer_dir=self.tokenizer_dir, tokenizer_kv=self.tokenizer_kv, codec_params=dict(self.params),
                     warnings=list(self.warnings), precision="float", stack=selection)

    def _loader(self, m: Matrix, selection: Selection, mode: str):
        def load() -> Float:
            n = selection.blocks[m.name]
            blocks = [self.block(m.name, i, selection) for i in range(n)]
            return Float(avd.reconstruct(blocks, m.shape, self.act_scale(m.name, selection), mode=mode), "F32")

        return load

    def _float_loader(self, tensor: str, dtype: str, nbytes: int, selection: Selection):
        def load() -> Float:
            raw = self.store.raw(tensor)
            selection.touch(tensor, nbytes)
            return Float(raw, dtype)

        return load

    def close(self) -> None:
        self.store.close()


# -- opening -------------------------------------------------------------------------------

def _json_param(meta: dict[str, Any], key: str, where: str) -> Any:
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError):
        raise BitpackError(f"{where}: {key} is not valid JSON") from None


def _kind(store: _Store, path: Path) -> str:
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
    store = _store(path)
    try:
        return _open(path, store, require_order)
    except BaseException:
        store.close()
        raise


def _open(path: Path, store: _Store, require_order: bool) -> OpenStack:
    where = str(path)
    layout = _kind(store, path)
    naming = Naming(store.container)
    names = set(store.names())
    folder = path if path.is_dir() else path.parent
    config, tokenizer_dir, tokenizer_kv, warnings = None, None, {}, list(store.warnings)
    files = list(store.files)
    if store.container == "safetensors":
        config, dups = read_config(folder)
        warnings += [d.message for d in dups]
        files.append(folder / "config.json")
        hp = HParams.from_config(config, where)
        has_sub = any(".attn_sub_norm." in n or ".inner_attn_ln." in n for n in names)
        arch = decide(hp.hidden_act, has_sub)
        if arch is None:
            raise BitpackError(f"{where}: unsupported architecture (hidden_act {hp.hidden_act!r})")
        tokenizer_dir = folder if tokenizer_files(folder) else None
        # every file a copy reads: the tokenizer files it carries over, the reference order
        files += tokenizer_files(folder) + [p for p in (folder / COMPRESSION_CONFIG,) if p.is_file()]
    else:
        kv = store.metadata
        try:
            arch = architecture(kv.get("general.architecture") or "")
        except KeyError:
            raise BitpackError(f"{where}: architecture {kv.get('general.architecture')!r} is not one bitpack reads") from None
        hp = HParams.from_gguf(kv, arch.name, arch.hidden_act, "output.weight" not in names, where)
        tokenizer_kv = {k: (v, store.f.kv_types[k]) for k, v in kv.items() if k.startswith("tokenizer.")}
        if kv.get(KEY_ROW_ORDER, "hf") != "hf":
            raise BitpackError(f"{where}: {KEY_ROW_ORDER} is {kv.get(KEY_ROW_ORDER)!r}; bitpack stacks keep HF row order")

    # parameters
    if layout == "bitpack":
        params = _json_param(store.metadata, KEY_PARAMS, where) if KEY_PARAMS in store.metadata else None
        if not isinstance(params, dict):
            raise BitpackError(f"{where}: {KEY_PARAMS} is missing or not a JSON object")
        k, n_blocks = params.get("k"), params.get("niter")
        for key, value in (("k", k), ("niter", n_blocks)):
            if type(value) is not int or value < 1 or value > avd.MAX_COUNT:
                raise BitpackError(f"{where}: {KEY_PARAMS} {key} is {value!r}; expected a whole number 1..{avd.MAX_COUNT}")
    else:
        params, k, n_blocks = _reference_params(path, store, hp, arch, naming, where)

    # projections: every block tensor checked against the shapes the config implies
    proj = projection_names(arch, hp.n_layers, hp.tied)
    used: set[str] = set()
    matrices = []
    scaled_flags = set()
    for name in proj:
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
                _check(store, t, dtype, shape, where)
                used.add(t)
        stray = f"{naming.block(name, n_blocks)[0]}"
        if stray in names:
            raise BitpackError(f"{where}: {stray} is a block beyond the {n_blocks} the stack declares")
        scale_name = naming.act_scale(name)
        has_scale = scale_name in names
        if has_scale:
            _check(store, scale_name, "F32", (n_,), where)
            used.add(scale_name)
        scaled_flags.add(has_scale)
        matrices.append(Matrix(name, (m_, n_), avd.block_nbytes(m_, n_, k), available,
                               scale_name if has_scale else None, missing))
    if len(scaled_flags) > 1:
        raise BitpackError(f"{where}: some matrices have an act_scale tensor and others do not")
    has_scales = scaled_flags.pop() if scaled_flags else False
    if layout == "bitpack" and not params.get("folded") and bool(params.get("scaled")) != has_scales:
        raise BitpackError(f"{where}: codec_params scaled is {params.get('scaled')} but act_scale tensors are "
                           f"{'present' if has_scales else 'absent'}")
    if layout == "reference" and has_scales:
        raise BitpackError(f"{where}: act_scale tensors without bitpack metadata; not a layout bitpack knows")

    # everything else: embeddings, head, norms, as stored
    extras = []
    for canonical, slot, layer in slots(arch, hp.n_layers, hp.tied):
        if slot.kind is Kind.TERNARY:
            continue
        tensor = naming.extra(canonical)
        if store.container == "safetensors" and tensor not in names:  # 1bitLLM's sub-norm names
            tensor = next((h.format(i=layer) for h in slot.hf if h.format(i=layer) in names), tensor)
        if tensor not in names:
            raise BitpackError(f"{where}: missing tensor {tensor}")
        dtype, shape, nbytes = store.info(tensor)
        if dtype not in ("F32", "F16", "BF16"):
            raise BitpackError(f"{where}: {tensor} is {dtype}; a stack keeps embeddings and norms as F32, F16 or BF16")
        want = _extra_shape(canonical, hp)
        if not (shape == want or (slot.kind in (Kind.EMBEDDING, Kind.HEAD) and len(shape) == 2
                                  and shape[1] == want[1] and shape[0] >= want[0])):
            raise BitpackError(f"{where}: {tensor} has shape {list(shape)}, expected {list(want)} from the config")
        extras.append((canonical, slot.kind, tensor, dtype, shape, nbytes))
        used.add(tensor)
    stray = sorted(names - used)
    if hp.tied and "lm_head.weight" in stray:
        stray.remove("lm_head.weight")
        warnings.append(f"{where}: tied model carries an lm_head.weight; it is not used")
    if stray:
        raise BitpackError(f"{where}: tensors a {arch.name} stack does not have: {', '.join(stray[:6])}"
                           + (f" and {len(stray) - 6} more" if len(stray) > 6 else ""))

    stack = OpenStack(path, store, layout, naming, arch, hp, k, n_blocks, params, matrices, extras, None,
                      config=config, tokenizer_dir=tokenizer_dir, tokenizer_kv=tokenizer_kv, warnings=warnings,
                      files=files)
    stack.table = _table(stack, folder, require_order, where)
    return stack


def _check(store: _Store, tensor: str, dtype: str, shape: tuple[int, ...], where: str) -> None:
    got_dtype, got_shape, _ = store.info(tensor)
    if got_dtype != dtype or tuple(got_shape) != tuple(shape):
        raise BitpackError(f"{where}: {tensor} is {got_dtype} {list(got_shape)}; expected {dtype} {list(shape)}")


def _extra_shape(canonical: str, hp: HParams) -> tuple[int, ...]:
    if canonical in ("token_embd.weight", "output.weight"):
        return (hp.vocab_size, hp.hidden_size)
    if "ffn_sub_norm" in canonical:
        return (hp.intermediate_size,)
    return (hp.hidden_size,)


def _reference_params(path: Path, store: _Store, hp: HParams, arch, naming: Naming,
                      where: str) -> tuple[dict[str, Any], int, int]:
    """k from u_0, niter from the highest qweight_i present, scaled from the directory name
    when it follows the reference's ``..._scaled_{bool}`` pattern."""
    names = set(store.names())
    first = projection_names(arch, hp.n_layers, hp.tied)[0]
    u0 = naming.block(first, 0)[1]
    if u0 not in names:
        raise BitpackError(f"{where}: missing tensor {u0}")
    dtype, shape, _ = store.info(u0)
    if dtype != "F16" or len(shape) != 2:
        raise BitpackError(f"{where}: {u0} is {dtype} {list(shape)}; expected F16 (out, k)")
    k = int(shape[1])
    pattern = re.compile(r"\.qweight_(\d+)$")
    n_blocks = max(int(mt.group(1)) for n in names if (mt := pattern.search(n))) + 1
    if n_blocks > avd.MAX_COUNT:  # each matrix is walked block by block: bound it before looping
        raise BitpackError(f"{where}: a tensor qweight_{n_blocks - 1} claims {n_blocks} blocks; at most {avd.MAX_COUNT}")
    folder = path if path.is_dir() else path.parent
    scaled = re.search(r"_scaled_(True|False)", folder.name)
    scaled_flag = None if scaled is None else scaled.group(1) == "True"
    params = {"k": k, "niter": n_blocks, "scaled": scaled_flag, "folded": scaled_flag, "svd_sign": None,
              "scale_o_proj": False, "order": "ppl", "svd": "full", "producer": "reference"}
    return params, k, n_blocks


def _table(stack: OpenStack, folder: Path, require_order: bool, where: str) -> BudgetTable | None:
    names = [m.name for m in stack.matrices]
    meta = stack.store.metadata
    if stack.layout == "bitpack":
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
                order = json.loads(text)
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
    cfg_path = folder / COMPRESSION_CONFIG
    if not cfg_path.is_file():
        stack.warnings.append(f"{where}: no {COMPRESSION_CONFIG}; only explicit block counts can be loaded")
        return None
    try:
        configs = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BitpackError(f"{cfg_path}: not readable JSON ({err})") from None
    if not isinstance(configs, list) or not all(isinstance(c, dict) and isinstance(c.get("layers"), dict)
                                                  for c in configs):
        raise BitpackError(f"{cfg_path}: expected a list of {{'memory': bytes, 'layers': {{...}}}} objects")
    alias = stack.aliases()
    keyed = []
    for i, c in enumerate(configs):
        row = {}
        for key, n in c["layers"].items():
            if key not in alias:
                raise BitpackError(f"{cfg_path}: entry {i} names {key!r}, not a matrix of this model")
            if type(n) is not int or not 1 <= n <= stack.n_blocks:
                raise BitpackError(f"{cfg_path}: entry {i} gives {key} {n!r} blocks; the stack has {stack.n_blocks}")
            if alias[key] in row:
                raise BitpackError(f"{cfg_path}: entry {i} names {alias[key]} twice")
            row[alias[key]] = n
        keyed.append(row)
    table = table_from_configs(names, stack.block_bytes(), stack.extra_bytes, stack.n_blocks, keyed, str(cfg_path))
    stated = [c.get("memory") for c in configs]
    if stated != [int(b) for b in table.bytes]:
        stack.warnings.append(f"{cfg_path}: its 'memory' figures differ from the bytes of the tensors in the files "
                              f"(first: {stated[0]} vs {int(table.bytes[0])}); budgets use the files' bytes")
    return table


# -- public API ----------------------------------------------------------------------------

def open_stack(path: str | Path, *, budget: int | str | None = None, blocks: int | dict[str, int] | None = None,
               mode: str = "f32") -> Model:
    """A model whose projections load as ``Float(reconstruct(first n blocks), "F32")``.

    ``budget`` (bytes, or a size like "300MB") picks the largest configuration of the stack's
    table that fits (spec §4.4); ``blocks`` gives a uniform count or per-matrix counts
    (canonical names, or the reference's ``layer.{L}.self_attn.q_proj`` keys); neither loads
    every block. ``mode="reference-f16"`` reconstructs with the reference loader's f16 sums.
    ``model.stack`` is the :class:`~.budget.Selection` (blocks, bytes, bytes_loaded, table).
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
        store = _store(path)
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


__all__ = ["Naming", "OpenStack", "is_stack", "open_stack", "open_stack_files", "reference_key", "stack_report"]
