"""bitpack: convert, verify and pack ternary (BitNet b1.58) checkpoints.

    bitpack.open_model(path)                        -> the canonical model (tensors load lazily)
    bitpack.convert(src, "i2_s", ConvertOptions())  -> report dict
    bitpack.inspect(path)                           -> report dict
    bitpack.verify(reference, candidate)            -> report dict
    bitpack.codecs.get_codec(name, **params)        -> a codec
"""

__version__ = "0.1.0"

# The functions shadow their modules' names on purpose: bitpack.convert is the function.
from .convert import ConvertOptions, convert, open_model  # noqa: E402
from .inspect import inspect  # noqa: E402
from .verify import verify  # noqa: E402

__all__ = ["ConvertOptions", "__version__", "convert", "inspect", "open_model", "verify"]
