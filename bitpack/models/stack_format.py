"""The facts of a BitStack stack on disk, shared by its reader and its writer (formats/bitstack.md).

Metadata keys, the codec name, the format version, tensor naming per container (and the
reference layout's, spec/bitstack.md §5.1), the reference's compression_config.json keys,
and the fixed-width text encoding of the block order that the writer patches in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Kind, hf_name, slots

CODEC = "bitstack"
FORMAT_VERSION = 1
CONTAINERS = ("safetensors", "gguf")
KEY_CODEC = "bitpack.codec"
KEY_PARAMS = "bitpack.codec_params"
KEY_MATRICES = "bitpack.bitstack.matrices"
KEY_ORDER = "bitpack.bitstack.order"
KEY_ROW_ORDER = "bitpack.bitstack.row_order"
REDUCED_PPL = "reduced_ppl_average.json"
ORDER_PLACEHOLDER = "?"  # the order field's filler until the writer patches it in
EXTRA_DTYPES = ("F32", "F16", "BF16")  # how a stack keeps embeddings, head and norms


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


__all__ = [
    "CODEC", "CONTAINERS", "EXTRA_DTYPES", "FORMAT_VERSION", "KEY_CODEC", "KEY_MATRICES", "KEY_ORDER", "KEY_PARAMS",
    "KEY_ROW_ORDER", "ORDER_PLACEHOLDER", "REDUCED_PPL", "Naming", "encode_order", "order_text_length",
    "projection_names", "reference_key",
]
