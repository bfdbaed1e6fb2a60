"""Hyper-parameters: one table maps each to its config.json field and its GGUF key.

Sources: spec/checkpoints.md §4.1 and §8, spec/gguf.md §5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BitpackError

EMBEDDING_NAMES = ("token_embd.weight", "output.weight")  # (vocab_size, hidden_size) tensors

U32, F32 = "u32", "f32"

# (attribute, GGUF key below "{arch}.", GGUF value type, config.json field)
TABLE = (
    ("context_length", "context_length", U32, "max_position_embeddings"),
    ("hidden_size", "embedding_length", U32, "hidden_size"),
    ("n_layers", "block_count", U32, "num_hidden_layers"),
    ("intermediate_size", "feed_forward_length", U32, "intermediate_size"),
    ("n_heads", "attention.head_count", U32, "num_attention_heads"),
    ("n_kv_heads", "attention.head_count_kv", U32, "num_key_value_heads"),
    ("rms_norm_eps", "attention.layer_norm_rms_epsilon", F32, "rms_norm_eps"),
    ("rope_theta", "rope.freq_base", F32, "rope_theta"),
    ("head_dim", "rope.dimension_count", U32, "head_dim"),
    ("vocab_size", "vocab_size", U32, "vocab_size"),
)


@dataclass
class HParams:
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    rms_norm_eps: float
    rope_theta: float
    tied: bool
    hidden_act: str
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "extra"}

    # -- config.json -----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> HParams:
        def need(key: str) -> Any:
            if key not in config or config[key] is None:
                raise BitpackError(f"{where}: config.json has no '{key}'")
            return config[key]

        rope = config.get("rope_parameters") or {}
        theta = config.get("rope_theta", rope.get("rope_theta", 10000.0))
        scaling = config.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        if scaling:
            raise BitpackError(f"{where}: rope scaling {scaling!r} is not supported (only the default RoPE)")
        heads = int(need("num_attention_heads"))
        hidden = int(need("hidden_size"))
        bos, eos = config.get("bos_token_id"), config.get("eos_token_id")
        return cls(
            hidden_size=hidden,
            intermediate_size=int(need("intermediate_size")),
            n_layers=int(need("num_hidden_layers")),
            n_heads=heads,
            n_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            vocab_size=int(need("vocab_size")),
            context_length=int(config.get("max_position_embeddings") or 2048),
            rms_norm_eps=float(need("rms_norm_eps")),
            rope_theta=float(theta),
            tied=bool(config.get("tie_word_embeddings", False)),
            hidden_act=str(need("hidden_act")),
            bos_token_id=bos if isinstance(bos, int) else None,
            eos_token_id=eos[0] if isinstance(eos, list) and eos else (eos if isinstance(eos, int) else None),
        )

    def to_config(self) -> dict[str, Any]:
        out = {cfg: getattr(self, attr) for attr, _, _, cfg in TABLE}
        out.update(hidden_act=self.hidden_act, tie_word_embeddings=self.tied)
        if self.bos_token_id is not None:
            out["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            out["eos_token_id"] = self.eos_token_id
        return out

    # -- GGUF ------------------------------------------------------------------------
    def gguf_kv(self, arch: str) -> list[tuple[str, Any, str]]:
        """(key, value, type) for the hyper-parameter keys of ``arch``."""
        kv = [(f"{arch}.{key}", getattr(self, attr), kind) for attr, key, kind, _ in TABLE]
        if self.head_dim * self.n_heads != self.hidden_size:  # llama.cpp derives it otherwise (gguf.md §5)
            kv += [(f"{arch}.attention.key_length", self.head_dim, U32),
                   (f"{arch}.attention.value_length", self.head_dim, U32)]
        return kv

    @classmethod
    def from_gguf(cls, kv: dict[str, Any], arch: str, hidden_act: str, tied: bool, where: str) -> HParams:
        def get(key: str, default: Any = None) -> Any:
            value = kv.get(f"{arch}.{key}", default)
            if value is None:
                raise BitpackError(f"{where}: GGUF metadata has no '{arch}.{key}'")
            return value

        hidden = int(get("embedding_length"))
        heads = int(get("attention.head_count"))
        tokens = kv.get("tokenizer.ggml.tokens")
        vocab = kv.get(f"{arch}.vocab_size") or (len(tokens) if tokens is not None else None)
        if vocab is None:
            raise BitpackError(f"{where}: GGUF metadata has neither '{arch}.vocab_size' nor tokenizer tokens")
        bos, eos = kv.get("tokenizer.ggml.bos_token_id"), kv.get("tokenizer.ggml.eos_token_id")
        return cls(
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            n_layers=int(get("block_count")),
            n_heads=heads,
            n_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=int(kv.get(f"{arch}.attention.key_length") or get("rope.dimension_count", hidden // heads)),
            vocab_size=int(vocab),
            context_length=int(get("context_length")),
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            rope_theta=float(get("rope.freq_base", 10000.0)),
            tied=tied,
            hidden_act=hidden_act,
            bos_token_id=None if bos is None else int(bos),
            eos_token_id=None if eos is None else int(eos),
        )

    # -- shapes ----------------------------------------------------------------------
    def ternary_shape(self, gguf_name: str) -> tuple[int, int]:
        """Logical (M, K) of a projection from its canonical name."""
        q, kv, ff, hidden = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.intermediate_size, self.hidden_size
        shapes = {
            "attn_q": (q, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
            "attn_output": (hidden, q), "ffn_gate": (ff, hidden), "ffn_up": (ff, hidden),
            "ffn_down": (hidden, ff),
        }
        return shapes[gguf_name.split(".")[2]]

    def float_shape(self, canonical: str) -> tuple[int, ...]:
        """Shape of an embedding, the head or a norm from its canonical name."""
        if canonical in EMBEDDING_NAMES:
            return (self.vocab_size, self.hidden_size)
        if "ffn_sub_norm" in canonical:
            return (self.intermediate_size,)
        return (self.hidden_size,)

    def float_shape_fits(self, canonical: str, shape: tuple[int, ...]) -> bool:
        """Whether a stored embedding, head or norm has the shape the config implies; embedding
        and head rows may be padded beyond vocab_size."""
        want = self.float_shape(canonical)
        if canonical in EMBEDDING_NAMES and len(shape) == 2 and shape[1] == want[1] and shape[0] >= want[0]:
            return True
        return tuple(shape) == want
