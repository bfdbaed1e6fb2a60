"""The reference BitStack layout (xinghaow99/BitStack ``save_pretrained`` output, spec/bitstack.md
§5.1): no bitpack metadata, so the parameters come from the tensors and the folder name, and
the block order from ``compression_config.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..bitstack import avd
from ..bitstack.budget import BudgetTable, table_from_configs
from ..containers.hf_dir import COMPRESSION_CONFIG
from ..errors import BitpackError
from ..jsonsafe import check_depth
from .hparams import HParams
from .stack_format import Naming, projection_names
from .stack_model import OpenStack
from .stack_store import Store


def reference_params(path: Path, store: Store, hp: HParams, arch, naming: Naming,
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


def reference_table(stack: OpenStack, cfg_path: Path, where: str) -> BudgetTable | None:
    names = [m.name for m in stack.matrices]
    if not cfg_path.is_file():
        stack.warnings.append(f"{where}: no {COMPRESSION_CONFIG}; only explicit block counts can be loaded")
        return None
    try:
        configs = json.loads(check_depth(cfg_path.read_text(encoding="utf-8"), str(cfg_path)))
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


__all__ = ["reference_params", "reference_table"]
