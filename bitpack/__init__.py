"""bitpack: convert, verify and pack ternary (BitNet b1.58) checkpoints."""

__version__ = "0.1.0"
