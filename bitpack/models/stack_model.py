"""An opened BitStack stack: its matrices, blocks and budget table, and the Model a selection gives.

Built and checked by :func:`.stack_source.open_stack_files`; selecting blocks (a budget,
uniform or per-matrix counts, spec/bitstack.md §4.4) never reads a block, and the Model's
projections reconstruct only the selected blocks, counting the bytes read in the Selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bitstack import avd
from ..bitstack.budget import (
    BudgetTable,
    Selection,
    explicit_counts,
    parse_size,
    select,
    uniform_counts,
)
from ..containers.hf_dir import COMPRESSION_CONFIG
from ..errors import BitpackError
from .arch import Kind, hf_name, slots
from .hparams import HParams
from .model import Entry, Float, Model
from .stack_format import Naming, reference_key
from .stack_store import Store


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
    store: Store
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


__all__ = ["Matrix", "OpenStack"]
