"""BitStack stacks on disk: the API the pipelines use (formats/bitstack.md).

    write_stack(model, out, ...)            -> report dict (stack_write.py)
    open_stack(path, budget=..., blocks=...) -> Model whose projections reconstruct (stack_read.py)
    is_stack(path)                           -> bool
    stack_report(path)                       -> dict for inspect
    parse_size("300MB")                      -> bytes (budget.py)
    perplexity(model, windows)               -> float (order.py)
"""

from __future__ import annotations

from .budget import BudgetTable, Selection, parse_size, select
from .order import ORDERS, perplexity
from .stack_read import OpenStack, is_stack, open_stack, open_stack_files, stack_report
from .stack_write import DEFAULT_SHARD_BYTES, write_stack

__all__ = [
           "DEFAULT_SHARD_BYTES",
           "ORDERS",
           "BudgetTable",
           "OpenStack",
           "Selection",
           "is_stack",
           "open_stack",
           "open_stack_files",
           "parse_size",
           "perplexity",
           "select",
           "stack_report",
           "write_stack",
]
