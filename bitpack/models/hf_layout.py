"""Which layout an HF checkpoint's projections are in (spec/checkpoints.md §1, §4.3): BitNet
master weights, an ordinary float model (or, for weight-only graphs, floats read on their
ternary grid), transformers' packed layout with its linear class, or bitpack's own layouts --
decided from config.json, the safetensors metadata and one projection's dtype."""

from __future__ import annotations

from typing import Any

from ..containers.safetensors_read import Checkpoint
from ..errors import BitpackError
from .arch import architecture
from .conventions import resolve_linear_class

FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


def _is_bitnet(config: dict[str, Any], arch: str) -> bool:
    """Whether float projections are BitNet master weights rather than an ordinary model."""
    if architecture(arch).weight_only:  # nn.Linear layers: floats are weights, on a ternary grid or not
        return False
    if arch != "llama" or config.get("quantization_config"):
        return True
    if not isinstance(config.get("architectures") or [], list):
        return False
    if config.get("is_bitnet_config") or "weight_bits" in config or "input_bits" in config:
        return True
    return any("bitnet" in str(a).lower() for a in config.get("architectures") or ())


def checkpoint_layout(config: dict[str, Any], ckpt: Checkpoint, where: str,
                      scale_convention: str | None = None, arch: str = "llama") -> tuple[str, str | None, str | None]:
    """("master" | "float" | "packed" | "bitpack", linear_class, bitpack codec)."""
    meta = ckpt.metadata or {}
    codec = meta.get("bitpack.codec")
    if codec in ("int8", "i2_packed"):
        return "bitpack", None, codec
    if codec not in (None, "hf_packed", "unpacked"):  # these read like any transformers checkpoint
        raise BitpackError(f"{where}: bitpack.codec {codec!r} is not a safetensors ternary layout")
    qc = config.get("quantization_config")
    if qc is None:
        qc = {}
    if not isinstance(qc, dict):
        raise BitpackError(f"{where}: config.json quantization_config is {type(qc).__name__} "
                           f"{repr(qc)[:40]}; expected an object")
    method = qc.get("quant_method")
    if method not in (None, "bitnet", "bitpack"):
        raise BitpackError(f"{where}: quant_method {method!r} is not BitNet; bitpack reads ternary checkpoints")
    if qc.get("use_rms_norm"):
        raise BitpackError(f"{where}: quantization_config.use_rms_norm is true; no published checkpoint uses it "
                           "and bitpack does not support it")
    probe = next((n for n in ckpt.names() if n.endswith("q_proj.weight")), None)
    if probe is None:
        raise BitpackError(f"{where}: no self_attn.q_proj.weight; not a decoder checkpoint bitpack knows")
    dtype = ckpt.info(probe).dtype
    if dtype in FLOAT_DTYPES:
        return ("master" if _is_bitnet(config, arch) else "float"), None, None
    if dtype != "U8":
        raise BitpackError(f"{where}: {probe} is {dtype}; expected float master weights or packed U8")
    if not qc and scale_convention is None:
        raise BitpackError(f"{where}: projections are packed U8 but config.json has no quantization_config, so "
                           "what weight_scale means is unknown. Pass --scale-convention multiply "
                           "(autobitlinear, e.g. 2B-4T) or divide (bitlinear, e.g. HF1BitLLM, Falcon3)")
    if not isinstance(qc.get("linear_class", ""), (str, type(None))):
        raise BitpackError(f"{where}: config.json quantization_config.linear_class is {repr(qc['linear_class'])[:40]}; "
                           "expected \"autobitlinear\" or \"bitlinear\"")
    linear_class = resolve_linear_class(qc.get("linear_class"), f"{where}: linear_class").name
    if qc.get("quantization_mode", "offline") != "offline":
        raise BitpackError(f"{where}: projections are packed U8 but quantization_mode is "
                           f"{qc.get('quantization_mode')!r}; the config contradicts the weights")
    return "packed", linear_class, "hf_packed"
