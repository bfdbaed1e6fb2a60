"""``hf`` numerics: the forward pass as transformers computes it in the model's dtype, eager
attention (spec/architectures.md §7.3).

Ternary models: transformers' BitNet layers in the checkpoint's dtype, bf16. Every
activation between ops is rounded to bf16, the BitLinear layers fake-quantize in float32
and round where transformers' compiled kernels round, and the logits come out as bf16
values. Which BitLinear runs depends on the checkpoint: ``autobitlinear`` offline (packed,
multiply), online (masters: W_dq = bf16(t / s_q)), or ``bitlinear`` (packed, divide by
the stored weight_scale).

Weight-only ternary models (qwen3): Qwen3ForCausalLM in float32 (``dtype=torch.float32``),
every projection an ``nn.Linear`` whose weight is s x t.

Full-precision models (``Model.precision == "float"``): LlamaForCausalLM loaded with
``dtype`` = the projections' stored dtype (F16 -> float16, BF16 -> bfloat16, F32 ->
float32; else config.json's ``torch_dtype``). Every tensor is held in that dtype, every op
rounds its result to it at the same points as for BitNet, and a projection is one
``nn.Linear``: x @ W.T accumulated in float32, rounded once. In F32 this is exact mode up to
transformers' own op order.
"""

from __future__ import annotations

import numpy as np

from ..errors import BitpackError
from ..models.conventions import LINEAR_CLASSES
from ..models.floats import round_through
from ..models.model import Float, Model, Ternary
from .forward import Capture, Executor
from .numerics import reciprocal_scale, rope_tables, silu, token_absmax

F32 = np.float32


def bf(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    return round_through(x, "BF16")


TORCH_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}


class HFExecutor(Executor):
    def __init__(self, model: Model, capture: Capture | None = None, keep_codes: bool | str = False) -> None:
        super().__init__(model, "exact", capture, keep_codes)
        if model.precision == "float" or model.arch.weight_only:  # nn.Linear layers (qwen3: §7)
            self.dtype = _float_model_dtype(model)
            self.online, self.linear_class = False, None
            return
        if model.container != "safetensors" or model.layout.startswith("bitpack"):
            raise BitpackError("hf numerics emulate transformers, which loads HF checkpoints in the published "
                               "layouts (masters or hf_packed); convert to hf_packed first")
        self.dtype = "BF16"
        self.online = model.layout.startswith("master")
        self.linear_class = "autobitlinear" if self.online else model.linear_class

    def _r(self, x: np.ndarray) -> np.ndarray:
        """Round float32 values to the model dtype (kept as float32)."""
        return round_through(x, self.dtype)

    def _widen(self, value: Float) -> np.ndarray:
        return self._r(super()._widen(value))  # transformers holds every float tensor in the model dtype

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        variance = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
        y = self._r(x * (F32(1) / np.sqrt(variance + F32(self.hp.rms_norm_eps))))
        return self._r(self._float(name) * y)

    def _float_linear(self, x: np.ndarray, weight: Float) -> np.ndarray:
        return self._r(x @ self._widen(weight).T)  # nn.Linear in the model dtype

    def _table_values(self, t: Ternary) -> np.ndarray:
        return self._r(t.values)

    def _ternary_matmul(self, x: np.ndarray, stored: str, t: Ternary, params: dict | None = None) -> np.ndarray:
        if self.model.arch.weight_only:  # an nn.Linear whose weight is s x t in the model dtype
            return self._r(x @ self._r(t.values).T)
        codes = self._codes_f32(t.codes)
        m = token_absmax(x)
        if self.linear_class == "bitlinear":
            # activation_quant: the scale is a bf16 tensor; the product x * scale is not rounded
            s_b = bf(reciprocal_scale(m))
            q = np.clip(np.rint(x * s_b), -128, 127).astype(F32)
            y = bf(q @ codes.T)
            ws = LINEAR_CLASSES["bitlinear"].stored(t.scale) if t.source_weight_scale is None \
                else _bf16_value(t.source_weight_scale)
            return bf(y / (s_b * bf(np.array([ws], F32))[0]))
        s_x = reciprocal_scale(m).astype(F32)
        x_dq = bf(np.clip(np.rint(x * s_x), -128, 127) / s_x)
        if self.online:
            weight = codes * bf(np.array([t.scale], F32))[0]  # W_dq = bf16(t / s_q)
            return bf(x_dq @ weight.T)
        y = bf(x_dq @ codes.T)
        return bf(y * bf(np.array([t.scale], F32))[0])

    def _rope_tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.hp.rope_scaling is not None:  # transformers' scaled inverse frequencies (qwen3.md §5)
            cos, sin = rope_tables(positions, self.hp.head_dim, self.hp.rope_theta, self.hp.rope_scaling)
            return self._r(cos), self._r(sin)
        d = self.hp.head_dim
        inv_freq = (F32(1) / np.power(F32(self.hp.rope_theta), np.arange(0, d, 2, dtype=F32) / F32(d))).astype(F32)
        angles = (positions.astype(F32)[:, None] * inv_freq[None, :]).astype(F32)
        return self._r(np.cos(angles)), self._r(np.sin(angles))

    def _rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        cos2 = np.concatenate([cos, cos], axis=-1)
        sin2 = np.concatenate([sin, sin], axis=-1)
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return self._r(self._r(x * cos2) + self._r(rotated * sin2))

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        group = self.hp.n_heads // self.hp.n_kv_heads
        k = np.repeat(k, group, axis=0)
        v = np.repeat(v, group, axis=0)
        scores = self._r(self._r(q @ k.transpose(0, 2, 1)) * F32(self.hp.head_dim ** -0.5))
        t = q.shape[1]
        scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, F32(-np.inf))
        e = np.exp(scores - scores.max(axis=-1, keepdims=True), dtype=F32)
        p = self._r(e / e.sum(axis=-1, keepdims=True, dtype=F32))
        return self._r(p @ v)

    def _gate(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        if self.model.arch.hidden_act == "relu2":
            act = np.maximum(gate, F32(0))
            act = self._r(act * act)
        else:
            act = self._r(silu(gate))
        return self._r(act * up)

    def _add(self, h: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._r(h + y)

    def _head(self, z: np.ndarray, head: np.ndarray) -> np.ndarray:
        return self._r(z @ head.T)


def _float_model_dtype(model: Model) -> str:
    """The dtype transformers would run a full-precision model in: its projections' stored
    dtype, else config.json's torch_dtype."""
    if model.arch.weight_only and model.precision == "ternary":
        return "F32"  # Qwen3ForCausalLM loaded with dtype=torch.float32, where s x t and the activations are exact
    stored = {e.stored for e in model.ternary}
    if len(stored) == 1 and stored <= set(TORCH_DTYPES.values()):
        return stored.pop()
    declared = (model.config or {}).get("torch_dtype") or (model.config or {}).get("dtype")
    if declared in TORCH_DTYPES:
        return TORCH_DTYPES[declared]
    raise BitpackError(f"hf numerics: cannot tell which dtype transformers would run {model.source} in "
                       f"(projections stored as {', '.join(sorted(stored))}, no torch_dtype in config.json)")


def _bf16_value(raw: np.ndarray) -> np.float32:
    """A stored weight_scale (bf16 bits, f16 or f32) as transformers holds it: a bf16 value."""
    raw = np.asarray(raw).reshape(-1)
    if raw.dtype == np.uint16:
        return Float(raw, "BF16").values[0]
    return bf(raw.astype(F32))[0]
