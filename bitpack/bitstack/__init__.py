"""BitStack residual stacks (spec/bitstack.md): decomposition, block ordering, budget selection.

``bitpack.bitstack.avd`` holds the iterative absolute-value decomposition, the per-block
layout (formats/bitstack_blocks.md) and reconstruction.
"""
