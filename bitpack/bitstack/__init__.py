"""BitStack residual stacks (spec/bitstack.md): the pure math, NumPy only.

``avd`` holds the iterative absolute-value decomposition, the per-block layout
(formats/bitstack_blocks.md) and reconstruction; ``order`` the global block orders;
``budget`` sizes, the configuration table and selection. Nothing here knows files, models
or the executor: stacks on disk are ``bitpack.models.stack_source`` / ``stack_target``,
calibration and perplexity ``bitpack.pipelines.calibrate`` / ``ppl``.
"""
