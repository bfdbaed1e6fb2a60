"""Architectures as data: which graph a model runs, and its tensors' names on both sides.

The internal ("canonical") name of every tensor is its GGUF name (``blk.3.attn_q.weight``).
Ternary weights are kept in Hugging Face row order; the llama GGUF q/k row permutation is
applied only at the GGUF boundary (spec/checkpoints.md §5).

Sources: spec/checkpoints.md §4.3 (architecture decision), §6 (HF names), spec/gguf.md §4-§6
(architecture strings, hyper-parameter keys, GGUF names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(Enum):
    TERNARY = "ternary"  # one of the seven projections
    NORM = "norm"  # RMSNorm weights, always F32 in GGUF
    EMBEDDING = "embedding"  # token embedding
    HEAD = "head"  # untied output projection


@dataclass(frozen=True)
class Slot:
    """One tensor of a layer (or of the model when ``per_layer`` is False)."""

    gguf: str  # GGUF name; "{i}" is the layer index
    kind: Kind
    hf: tuple[str, ...]  # accepted HF names, the first one is written
    sub_norm: bool = False  # exists only in architectures with sub-norms
    qk_norm: bool = False  # exists only in architectures with per-head q/k norms (qwen3)
    hf_bitnet: str | None = None  # HF name written for BitNet-family targets, when it differs


MODEL_SLOTS = (
    Slot("token_embd.weight", Kind.EMBEDDING, ("model.embed_tokens.weight",)),
    Slot("output_norm.weight", Kind.NORM, ("model.norm.weight",)),
    Slot("output.weight", Kind.HEAD, ("lm_head.weight",)),
)

LAYER_SLOTS = (
    Slot("blk.{i}.attn_norm.weight", Kind.NORM, ("model.layers.{i}.input_layernorm.weight",)),
    Slot("blk.{i}.attn_q.weight", Kind.TERNARY, ("model.layers.{i}.self_attn.q_proj.weight",)),
    Slot("blk.{i}.attn_k.weight", Kind.TERNARY, ("model.layers.{i}.self_attn.k_proj.weight",)),
    Slot("blk.{i}.attn_v.weight", Kind.TERNARY, ("model.layers.{i}.self_attn.v_proj.weight",)),
    Slot("blk.{i}.attn_q_norm.weight", Kind.NORM, ("model.layers.{i}.self_attn.q_norm.weight",), qk_norm=True),
    Slot("blk.{i}.attn_k_norm.weight", Kind.NORM, ("model.layers.{i}.self_attn.k_norm.weight",), qk_norm=True),
    Slot("blk.{i}.attn_output.weight", Kind.TERNARY, ("model.layers.{i}.self_attn.o_proj.weight",)),
    Slot(
        "blk.{i}.attn_sub_norm.weight",
        Kind.NORM,
        ("model.layers.{i}.self_attn.attn_sub_norm.weight", "model.layers.{i}.self_attn.inner_attn_ln.weight"),
        sub_norm=True,
    ),
    Slot("blk.{i}.ffn_norm.weight", Kind.NORM, ("model.layers.{i}.post_attention_layernorm.weight",)),
    Slot("blk.{i}.ffn_gate.weight", Kind.TERNARY, ("model.layers.{i}.mlp.gate_proj.weight",)),
    Slot("blk.{i}.ffn_up.weight", Kind.TERNARY, ("model.layers.{i}.mlp.up_proj.weight",)),
    Slot("blk.{i}.ffn_down.weight", Kind.TERNARY, ("model.layers.{i}.mlp.down_proj.weight",)),
    Slot(
        "blk.{i}.ffn_sub_norm.weight",
        Kind.NORM,
        ("model.layers.{i}.mlp.ffn_sub_norm.weight", "model.layers.{i}.mlp.ffn_layernorm.weight"),
        sub_norm=True,
    ),
)


@dataclass(frozen=True)
class Architecture:
    name: str  # GGUF general.architecture
    hidden_act: str  # "relu2" or "silu"
    sub_norms: bool
    permute_qk: bool  # llama.cpp's NORM RoPE needs interleaved q/k rows
    head_always_tied: bool  # the graph multiplies by token_embd; an output tensor is refused
    separate_scales: bool  # the graph reads optional F32 "<proj>.scale" tensors (gguf.md §6.1)
    hf_architectures: tuple[str, ...]  # config.json "architectures" written for this graph
    hf_model_type: str
    dialects: tuple[str, ...]  # GGUF dialects whose runtime executes this graph correctly
    # Weight-only ternary (qwen3.md: Ternary Bonsai): nn.Linear layers whose weights happen to
    # be s_g x t, float activations (no BitLinear int8 step), per-head q/k RMSNorm, and the
    # token embedding and head may be ternary too. False: BitNet's BitLinear graph.
    weight_only: bool = False
    qk_norm: bool = False


ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("bitnet-b1.58", "relu2", True, False, True, False,
                     ("BitNetForCausalLM",), "bitnet", ("bitnet-cpp-2024", "bitnet-cpp-2026", "ik-llama")),
        Architecture("bitnet", "silu", True, False, True, True,
                     ("BitNetForCausalLM",), "bitnet", ("mainline", "bitnet-cpp-2024", "bitnet-cpp-2026", "prism", "ik-llama")),
        Architecture("llama", "silu", False, True, False, False,
                     ("LlamaForCausalLM",), "llama", ("mainline", "bitnet-cpp-2024", "bitnet-cpp-2026", "prism", "ik-llama")),
        # mainline @0c1e570 creates and applies optional ".scale" tensors for every
        # architecture (qwen3.md §2); the Prism fork and ik_llama.cpp run qwen3 too
        Architecture("qwen3", "silu", False, False, False, True,
                     ("Qwen3ForCausalLM",), "qwen3", ("mainline", "prism", "ik-llama"),
                     weight_only=True, qk_norm=True),
    )
}
ALIASES = {"bitnet-25": "bitnet-b1.58"}  # the first 2B-4T upload's name for the same graph


# config.json names of the graphs above: every "architectures" class and "model_type" a
# checkpoint bitpack reads may carry (1bitLLM spells its class "BitnetForCausalLM").
HF_CLASSES = frozenset({c for a in ARCHITECTURES.values() for c in a.hf_architectures} | {"BitnetForCausalLM"})
HF_MODEL_TYPES = frozenset(a.hf_model_type for a in ARCHITECTURES.values())


def architecture(name: str) -> Architecture:
    return ARCHITECTURES[ALIASES.get(name, name)]


def unknown_hf_names(config: dict) -> list[str]:
    """The config.json ``architectures`` classes and ``model_type`` bitpack has no table for
    (as shown to the user); a value of the wrong type is listed too."""
    unknown = []
    classes = config.get("architectures")
    if classes is not None:
        if not isinstance(classes, list):
            classes = [classes]
        unknown += [f"architectures {c!r}"[:80] for c in classes if not (isinstance(c, str) and c in HF_CLASSES)]
    model_type = config.get("model_type")
    if model_type is not None and not (isinstance(model_type, str) and model_type in HF_MODEL_TYPES):
        unknown.append(f"model_type {model_type!r}"[:80])
    return unknown


_LAYER = re.compile(r"^(?:blk|model\.layers)\.(\d{1,9})\.")


def layer_count(names: Iterable[str]) -> int:
    """How many layers the tensor names back: one past the highest layer index present."""
    found = [int(m.group(1)) for m in map(_LAYER.match, names) if m]
    return max(found) + 1 if found else 0


def decide(hidden_act: str, has_sub_norms: bool, model_type: Any = None) -> Architecture | None:
    """The graph of an HF checkpoint (checkpoints.md §4.3); None when unsupported. A weight-only
    graph is chosen only by its own ``model_type``: a qwen3 config says so, a Llama one cannot
    turn into it by its shapes."""
    own = {a.hf_model_type: a for a in ARCHITECTURES.values() if a.weight_only}
    if model_type in own:
        return own[model_type] if own[model_type].hidden_act == hidden_act else None
    for arch in ARCHITECTURES.values():
        if not arch.weight_only and arch.hidden_act == hidden_act and arch.sub_norms == has_sub_norms:
            return arch
    return None


def slots(arch: Architecture, n_layers: int, tied: bool) -> list[tuple[str, Slot, int | None]]:
    """(canonical name, slot, layer) for every tensor a model of ``arch`` has, in GGUF order."""
    out = []
    for slot in MODEL_SLOTS:
        if slot.kind is Kind.HEAD and (tied or arch.head_always_tied):
            continue
        out.append((slot.gguf, slot, None))
    for i in range(n_layers):
        for slot in LAYER_SLOTS:
            if (slot.sub_norm and not arch.sub_norms) or (slot.qk_norm and not arch.qk_norm):
                continue
            out.append((slot.gguf.format(i=i), slot, i))
    return out


_SLOT_OF = {slot.gguf: slot for slot in (*MODEL_SLOTS, *LAYER_SLOTS)}


def hf_name(canonical: str) -> str:
    """The transformers name written for a canonical tensor (BitNet names for sub-norms)."""
    parts = canonical.split(".")
    if parts[0] == "blk":
        return _SLOT_OF["blk.{i}." + ".".join(parts[2:])].hf[0].format(i=int(parts[1]))
    return _SLOT_OF[canonical].hf[0]


def qk_row_order(name: str, rows: int, n_heads: int, n_kv_heads: int, to_gguf: bool):
    """The llama GGUF row order of a q or k projection (None for every other tensor)."""
    if ".attn_q." in name:
        return permute_rows(rows, rows // n_heads, to_gguf)
    if ".attn_k." in name:
        return permute_rows(rows, rows // n_kv_heads, to_gguf)
    return None


def permute_rows(rows: int, head_dim: int, to_gguf: bool) -> list[int] | None:
    """Row order for llama's q/k: GGUF row 2i + j <- HF row j*d/2 + i within every head.

    Returns the index array ``idx`` with ``new = old[idx]``."""
    import numpy as np

    if rows % head_dim or head_dim % 2:
        return None
    half = head_dim // 2
    heads = rows // head_dim
    hf_of_gguf = np.arange(rows).reshape(heads, 2, half).transpose(0, 2, 1).reshape(-1)
    return hf_of_gguf if to_gguf else np.argsort(hf_of_gguf)
