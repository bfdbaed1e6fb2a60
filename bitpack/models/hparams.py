"""Hyper-parameters: one table maps each to its config.json field and its GGUF key.

Sources: spec/checkpoints.md §4.1 and §8, spec/gguf.md §5.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

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


# Bounds far above any published model and far below what would make bitpack allocate or loop
# without limit; the tensors present must then back every count (the sources check that).
MAX_WIDTH = 1 << 20  # hidden, intermediate, heads x head_dim
MAX_HEADS = 1 << 12
MAX_HEAD_DIM = 1 << 12
MAX_LAYERS = 1 << 12
MAX_VOCAB = 1 << 24
MAX_CONTEXT = (1 << 32) - 1  # written as GGUF u32
MAX_TOKEN_ID = (1 << 32) - 1
_REQUIRED = object()

# (attribute, config.json field, kind, low, high, default (_REQUIRED: the field must be there))
CONFIG_FIELDS = (
    ("hidden_size", "hidden_size", int, 1, MAX_WIDTH, _REQUIRED),
    ("intermediate_size", "intermediate_size", int, 1, MAX_WIDTH, _REQUIRED),
    ("n_layers", "num_hidden_layers", int, 1, MAX_LAYERS, _REQUIRED),
    ("n_heads", "num_attention_heads", int, 1, MAX_HEADS, _REQUIRED),
    ("n_kv_heads", "num_key_value_heads", int, 1, MAX_HEADS, None),
    ("head_dim", "head_dim", int, 1, MAX_HEAD_DIM, None),
    ("vocab_size", "vocab_size", int, 1, MAX_VOCAB, _REQUIRED),
    ("context_length", "max_position_embeddings", int, 1, MAX_CONTEXT, 2048),
    ("rms_norm_eps", "rms_norm_eps", float, 0.0, 1.0, _REQUIRED),
    ("rope_theta", "rope_theta", float, 0.0, 1e30, 10000.0),
)

# The same for GGUF keys below "{arch}." (spec/gguf.md §5); the head dimension is
# attention.key_length when present, else rope.dimension_count, else hidden / heads.
GGUF_FIELDS = (
    ("hidden_size", "embedding_length", int, 1, MAX_WIDTH, _REQUIRED),
    ("intermediate_size", "feed_forward_length", int, 1, MAX_WIDTH, _REQUIRED),
    ("n_layers", "block_count", int, 1, MAX_LAYERS, _REQUIRED),
    ("n_heads", "attention.head_count", int, 1, MAX_HEADS, _REQUIRED),
    ("n_kv_heads", "attention.head_count_kv", int, 1, MAX_HEADS, None),
    ("head_dim", "rope.dimension_count", int, 1, MAX_HEAD_DIM, None),
    ("vocab_size", "vocab_size", int, 1, MAX_VOCAB, None),
    ("context_length", "context_length", int, 1, MAX_CONTEXT, _REQUIRED),
    ("rms_norm_eps", "attention.layer_norm_rms_epsilon", float, 0.0, 1.0, _REQUIRED),
    ("rope_theta", "rope.freq_base", float, 0.0, 1e30, 10000.0),
)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _checked(value: Any, kind: type, lo: float, hi: float, what: str) -> Any:
    """``value`` as ``kind`` when it is one (an integral float counts as an int) within
    [lo, hi] -- floats: lo < value <= hi, finite -- else one BitpackError naming ``what``."""
    if isinstance(value, (np.generic,)) and np.ndim(value) == 0:
        value = value.item()
    if kind is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BitpackError(f"{what} is {_shown(value)}; expected an integer from {lo} to {hi}")
        if not lo <= value <= hi:
            raise BitpackError(f"{what} is {value}; expected an integer from {lo} to {hi}")
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BitpackError(f"{what} is {_shown(value)}; expected a number")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range (config.json allows 1 followed by 400 digits)
        raise BitpackError(f"{what} is {_shown(value)}; expected a finite number above {lo} and at most {hi:g}") from None
    if not (math.isfinite(value) and lo < value <= hi):
        raise BitpackError(f"{what} is {value!r}; expected a finite number above {lo} and at most {hi:g}")
    return value


def _token_id(value: Any, what: str) -> int | None:
    return None if value is None else _checked(value, int, 0, MAX_TOKEN_ID, what)


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
    rope_scaling: dict[str, Any] | None = None  # {"type": "linear" | "yarn", "factor", ...}; None: plain RoPE
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "extra"}

    # -- config.json -----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> HParams:
        """The hyper-parameters of config.json, every field checked against CONFIG_FIELDS and
        against the others (heads divide hidden, kv heads divide heads) before use."""
        where = f"{where}: config.json"
        if not isinstance(config, dict):
            raise BitpackError(f"{where} is not a JSON object")
        rope = config.get("rope_parameters")
        if rope is None:
            rope = {}
        if not isinstance(rope, dict):
            raise BitpackError(f"{where}: 'rope_parameters' is {_shown(rope)}; expected an object")
        scaling = config.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
        values = {}
        for attr, key, kind, lo, hi, default in CONFIG_FIELDS:
            raw = config.get(key)
            if raw is None and key == "rope_theta":
                raw = rope.get("rope_theta")
            if raw is None:
                if default is _REQUIRED:
                    raise BitpackError(f"{where} has no '{key}'")
                values[attr] = default
                continue
            values[attr] = _checked(raw, kind, lo, hi, f"{where}: '{key}'")
        heads, hidden = values["n_heads"], values["hidden_size"]
        if values["n_kv_heads"] is None:
            values["n_kv_heads"] = heads
        if values["head_dim"] is None:
            if hidden % heads:
                raise BitpackError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads "
                                   f"{heads} and no head_dim is given")
            values["head_dim"] = hidden // heads
        tied = config.get("tie_word_embeddings", False)
        if tied is None:
            tied = False
        if not isinstance(tied, bool):
            raise BitpackError(f"{where}: 'tie_word_embeddings' is {_shown(tied)}; expected true or false")
        hidden_act = config.get("hidden_act")
        if hidden_act is None:
            raise BitpackError(f"{where} has no 'hidden_act'")
        if not isinstance(hidden_act, str):
            raise BitpackError(f"{where}: 'hidden_act' is {_shown(hidden_act)}; expected a string like \"silu\"")
        eos = config.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        hp = cls(**values, tied=tied, hidden_act=hidden_act,
                 bos_token_id=_token_id(config.get("bos_token_id"), f"{where}: 'bos_token_id'"),
                 eos_token_id=_token_id(eos, f"{where}: 'eos_token_id'"),
                 rope_scaling=rope_scaling_from_config(scaling, values["context_length"], where))
        hp.check_consistent(where, {"n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
                                    "head_dim": "head_dim", "hidden_size": "hidden_size"})
        return hp

    def check_consistent(self, where: str, names: dict[str, str]) -> None:
        """Relations between fields that each passed their own range check."""
        if self.n_heads % self.n_kv_heads:
            raise BitpackError(f"{where}: {names['n_kv_heads']} {self.n_kv_heads} does not divide "
                               f"{names['n_heads']} {self.n_heads}")
        if self.n_heads * self.head_dim > MAX_WIDTH:
            raise BitpackError(f"{where}: {names['n_heads']} {self.n_heads} x {names['head_dim']} {self.head_dim} "
                               f"is wider than {MAX_WIDTH}; expected heads x head_dim near {names['hidden_size']}")

    def to_config(self) -> dict[str, Any]:
        out = {cfg: getattr(self, attr) for attr, _, _, cfg in TABLE}
        out.update(hidden_act=self.hidden_act, tie_word_embeddings=self.tied)
        if self.bos_token_id is not None:
            out["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            out["eos_token_id"] = self.eos_token_id
        if self.rope_scaling is not None:
            out["rope_scaling"] = rope_scaling_config(self.rope_scaling)
        return out

    # -- GGUF ------------------------------------------------------------------------
    def gguf_kv(self, arch: str, explicit_head_dim: bool = False) -> list[tuple[str, Any, str]]:
        """(key, value, type) for the hyper-parameter keys of ``arch``; ``explicit_head_dim``
        writes the key and value lengths even where llama.cpp would derive them (qwen3.md §1.1)."""
        kv = [(f"{arch}.{key}", getattr(self, attr), kind) for attr, key, kind, _ in TABLE]
        if explicit_head_dim or self.head_dim * self.n_heads != self.hidden_size:  # else derived (gguf.md §5)
            kv += [(f"{arch}.attention.key_length", self.head_dim, U32),
                   (f"{arch}.attention.value_length", self.head_dim, U32)]
        if self.rope_scaling is not None:
            kv += [(f"{arch}.rope.scaling.{key}", self.rope_scaling[field_], kind)
                   for field_, key, kind in ROPE_GGUF if field_ in self.rope_scaling]
        return kv

    @classmethod
    def from_gguf(cls, kv: dict[str, Any], arch: str, hidden_act: str, tied: bool, where: str) -> HParams:
        """The hyper-parameters of GGUF metadata, every key's type and range checked (GGUF_FIELDS)."""
        values = {}
        for attr, key, kind, lo, hi, default in GGUF_FIELDS:
            full = f"{arch}.{key}"
            raw = kv.get(full)
            if raw is None:
                if default is _REQUIRED:
                    raise BitpackError(f"{where}: GGUF metadata has no '{full}'")
                values[attr] = default
                continue
            values[attr] = _checked(raw, kind, lo, hi, f"{where}: GGUF key '{full}'")
        heads, hidden = values["n_heads"], values["hidden_size"]
        if values["n_kv_heads"] is None:
            values["n_kv_heads"] = heads
        key_length = kv.get(f"{arch}.attention.key_length")
        if key_length is not None:
            values["head_dim"] = _checked(key_length, int, 1, MAX_HEAD_DIM, f"{where}: GGUF key '{arch}.attention.key_length'")
        if values["head_dim"] is None:
            if hidden % heads:
                raise BitpackError(f"{where}: {arch}.embedding_length {hidden} is not a multiple of "
                                   f"{arch}.attention.head_count {heads} and no head dimension is given")
            values["head_dim"] = hidden // heads
        if values["vocab_size"] is None:
            tokens = kv.get("tokenizer.ggml.tokens")
            if tokens is None:
                raise BitpackError(f"{where}: GGUF metadata has neither '{arch}.vocab_size' nor tokenizer tokens")
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise BitpackError(f"{where}: GGUF key 'tokenizer.ggml.tokens' must be an array of strings")
            values["vocab_size"] = _checked(len(tokens), int, 1, MAX_VOCAB, f"{where}: GGUF key 'tokenizer.ggml.tokens' (count)")
        hp = cls(**values, tied=tied, hidden_act=hidden_act,
                 bos_token_id=_token_id(kv.get("tokenizer.ggml.bos_token_id"), f"{where}: GGUF key 'tokenizer.ggml.bos_token_id'"),
                 eos_token_id=_token_id(kv.get("tokenizer.ggml.eos_token_id"), f"{where}: GGUF key 'tokenizer.ggml.eos_token_id'"),
                 rope_scaling=rope_scaling_from_gguf(kv, arch, values["context_length"], where))
        hp.check_consistent(where, {"n_heads": f"{arch}.attention.head_count",
                                    "n_kv_heads": f"{arch}.attention.head_count_kv",
                                    "head_dim": "head dimension", "hidden_size": f"{arch}.embedding_length"})
        return hp

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
        if ".attn_q_norm." in canonical or ".attn_k_norm." in canonical:  # per head (qwen3.md §2)
            return (self.head_dim,)
        return (self.hidden_size,)

    def float_shape_fits(self, canonical: str, shape: tuple[int, ...]) -> bool:
        """Whether a stored embedding, head or norm has the shape the config implies; embedding
        and head rows may be padded beyond vocab_size."""
        want = self.float_shape(canonical)
        if canonical in EMBEDDING_NAMES and len(shape) == 2 and shape[1] == want[1] and shape[0] >= want[0]:
            return True
        return tuple(shape) == want


# -- RoPE scaling (qwen3.md §5) ----------------------------------------------------------
# The normal form: {"type": "linear" | "yarn", "factor": s, "original_context_length": L_orig
# (yarn), "attn_factor": a (yarn; 1.0 unless a GGUF says otherwise)}.
ROPE_TYPES = ("linear", "yarn")
# (normal-form field, GGUF key below "{arch}.rope.scaling.", value type)
ROPE_GGUF = (("type", "type", "string"), ("factor", "factor", F32),
             ("original_context_length", "original_context_length", U32), ("attn_factor", "attn_factor", F32))
# config fields transformers uses and llama.cpp's qwen3 loader ignores (qwen3.md §5.4), with the
# value under which both compute the same model
DIVERGENT = {"beta_fast": 32.0, "beta_slow": 1.0, "extrapolation_factor": 1.0, "attention_factor": None,
             "mscale": None, "mscale_all_dim": None, "truncate": True}


def rope_scaling_from_config(scaling: Any, context: int, where: str) -> dict[str, Any] | None:
    """The normal form of config.json's ``rope_scaling`` / ``rope_parameters``; a type or a
    field that bitpack (or one of the runtimes) would compute differently is refused, named."""
    if not scaling:
        return None
    if not isinstance(scaling, dict):
        raise BitpackError(f"{where}: rope scaling is {_shown(scaling)}; expected an object")
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return None
    if kind not in ROPE_TYPES:
        raise BitpackError(f"{where}: rope scaling type {_shown(kind)} is not supported "
                           f"(bitpack runs {', '.join(ROPE_TYPES)} and plain RoPE)")
    for key, same in DIVERGENT.items():
        if key in scaling and scaling[key] is not None and scaling[key] != same:
            raise BitpackError(f"{where}: rope scaling sets {key} = {_shown(scaling[key])}, which transformers "
                               "uses and llama.cpp's loader ignores (qwen3.md §5.4): the runtimes would compute "
                               "different models, and bitpack does not convert it")
    out = {"type": kind, "factor": _checked(scaling.get("factor"), float, 0.0, 1e6, f"{where}: rope scaling 'factor'")}
    if kind == "yarn":
        original = scaling.get("original_max_position_embeddings", context)
        out["original_context_length"] = _checked(original, int, 1, MAX_CONTEXT,
                                                  f"{where}: rope scaling 'original_max_position_embeddings'")
        out["attn_factor"] = 1.0
    return out


def rope_scaling_from_gguf(kv: dict[str, Any], arch: str, context: int, where: str) -> dict[str, Any] | None:
    """The normal form of ``{arch}.rope.scaling.*`` as llama.cpp's loader reads them: type
    (default linear), factor (0 or absent: 1, i.e. none), original context (default the
    trained context), attn_factor (default 1)."""
    prefix = f"{arch}.rope.scaling."
    kind = kv.get(prefix + "type", "linear")
    if kind == "none":
        return None
    if kind not in ROPE_TYPES:
        raise BitpackError(f"{where}: GGUF key '{prefix}type' is {_shown(kind)}; bitpack runs "
                           f"{', '.join(ROPE_TYPES)} and none")
    factor = kv.get(prefix + "factor")
    factor = 0.0 if factor is None else _checked(factor, float, -1.0, 1e6, f"{where}: GGUF key '{prefix}factor'")
    if factor in (0.0, 1.0) and kind == "linear":
        return None
    if factor <= 0:
        raise BitpackError(f"{where}: GGUF key '{prefix}factor' is {factor}; expected a positive number")
    out = {"type": kind, "factor": factor}
    if kind == "yarn":
        original = kv.get(prefix + "original_context_length", context)
        out["original_context_length"] = _checked(original, int, 1, MAX_CONTEXT,
                                                  f"{where}: GGUF key '{prefix}original_context_length'")
        attn = kv.get(prefix + "attn_factor", 1.0)
        out["attn_factor"] = _checked(attn, float, 0.0, 1e6, f"{where}: GGUF key '{prefix}attn_factor'")
    return out


def rope_scaling_config(scaling: dict[str, Any]) -> dict[str, Any]:
    """config.json's ``rope_scaling`` for the normal form (what transformers reads)."""
    out = {"rope_type": scaling["type"], "factor": scaling["factor"]}
    if scaling["type"] == "yarn":
        out["original_max_position_embeddings"] = scaling["original_context_length"]
        if scaling.get("attn_factor", 1.0) != 1.0:
            raise BitpackError(f"a YaRN attn_factor of {scaling['attn_factor']} has no config.json field that "
                               "transformers applies the way llama.cpp does (qwen3.md §5.4)")
    return out
