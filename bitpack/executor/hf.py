"""``hf`` numerics: the forward pass as transformers' BitNet layers compute it in the
checkpoint's dtype (bf16), eager attention (spec/architectures.md §7.3).

Every activation between ops is rounded to bf16, the BitLinear layers fake-quantize in
float32 and round where transformers' compiled kernels round, and the logits come out as
bf16 values. Which BitLinear runs depends on the checkpoint: ``autobitlinear`` offline
(packed, multiply), online (masters: W_dq = bf16(t / s_q)), or ``bitlinear`` (packed,
divide by the stored weight_scale).
"""

from __future__ import annotations

import numpy as np

from ..errors import BitpackError
from ..models.floats import round_through
from ..models.model import Float, Model, Ternary
from .forward import Executor

F32 = np.float32


def bf(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    return round_through(x, "BF16")


class HFExecutor(Executor):
    def __init__(self, model: Model) -> None:
        super().__init__(model, "exact")
        if model.container != "safetensors" or model.layout.startswith("bitpack"):
            raise BitpackError("hf numerics emulate transformers, which loads HF checkpoints in the published "
                               "layouts (masters or hf_packed); convert to hf_packed first")
        self.online = model.layout.startswith("master")
        self.linear_class = "autobitlinear" if self.online else model.linear_class

    def _widen(self, value: Float) -> np.ndarray:
        return bf(super()._widen(value))  # transformers holds every float tensor in the model dtype

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        variance = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
        y = bf(x * (F32(1) / np.sqrt(variance + F32(self.hp.rms_norm_eps))))
        return bf(self._float(name) * y)

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        t = self._entries[name].load()
        assert isinstance(t, Ternary)
        codes = t.codes.astype(F32)
        m = np.maximum(np.abs(x).max(axis=-1, keepdims=True), F32(1e-5))
        if self.linear_class == "bitlinear":
            # activation_quant: the scale is a bf16 tensor; the product x * scale is not rounded
            s_b = bf((F32(1) / m) * F32(127))
            q = np.clip(np.rint(x * s_b), -128, 127).astype(F32)
            y = bf(q @ codes.T)
            ws = F32(1) / F32(t.scale) if t.source_weight_scale is None else _bf16_value(t.source_weight_scale)
            return bf(y / (s_b * bf(np.array([ws], F32))[0]))
        s_x = ((F32(1) / m) * F32(127)).astype(F32)  # 127/x lowered to reciprocal * 127 (§7.2)
        x_dq = bf(np.clip(np.rint(x * s_x), -128, 127) / s_x)
        if self.online:
            weight = codes * bf(np.array([t.scale], F32))[0]  # W_dq = bf16(t / s_q)
            return bf(x_dq @ weight.T)
        y = bf(x_dq @ codes.T)
        return bf(y * bf(np.array([t.scale], F32))[0])

    def _rope_tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.hp.head_dim
        inv_freq = (F32(1) / np.power(F32(self.hp.rope_theta), np.arange(0, d, 2, dtype=F32) / F32(d))).astype(F32)
        angles = (positions.astype(F32)[:, None] * inv_freq[None, :]).astype(F32)
        return bf(np.cos(angles)), bf(np.sin(angles))

    def _rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        cos2 = np.concatenate([cos, cos], axis=-1)
        sin2 = np.concatenate([sin, sin], axis=-1)
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return bf(bf(x * cos2) + bf(rotated * sin2))

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        group = self.hp.n_heads // self.hp.n_kv_heads
        k = np.repeat(k, group, axis=0)
        v = np.repeat(v, group, axis=0)
        scores = bf(bf(q @ k.transpose(0, 2, 1)) * F32(self.hp.head_dim ** -0.5))
        t = q.shape[1]
        scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, F32(-np.inf))
        e = np.exp(scores - scores.max(axis=-1, keepdims=True), dtype=F32)
        p = bf(e / e.sum(axis=-1, keepdims=True, dtype=F32))
        return bf(p @ v)

    def _gate(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        if self.model.arch.hidden_act == "relu2":
            act = np.maximum(gate, F32(0))
            act = bf(act * act)
        else:
            act = bf(gate / (F32(1) + np.exp(-gate)))
        return bf(act * up)

    def _add(self, h: np.ndarray, y: np.ndarray) -> np.ndarray:
        return bf(h + y)

    def _head(self, z: np.ndarray, head: np.ndarray) -> np.ndarray:
        return bf(z @ head.T)


def _bf16_value(raw: np.ndarray) -> np.float32:
    """A stored weight_scale (bf16 bits, f16 or f32) as transformers holds it: a bf16 value."""
    raw = np.asarray(raw).reshape(-1)
    if raw.dtype == np.uint16:
        return Float(raw, "BF16").values[0]
    return bf(raw.astype(F32))[0]
