"""The reference CPU executor: one full-sequence forward pass in NumPy.

It runs any model bitpack reads, through the same readers as ``convert``, and pulls one
projection's weights at a time, so a 2B-4T-shaped model needs about one layer of float32
weights in memory. Graphs come from the architecture table (spec/architectures.md §3-§5):
sub-norms before o_proj and down_proj where the architecture has them, ReLU² or SiLU
gating, tied or untied head. Weights are canonical (HF row order), so RoPE is always the
rotate-half form.

A projection runs by what its entry loads, whatever the source: a ``Ternary`` one as a
BitLinear (int8 activations, exact integer matmul) in BitNet graphs, or, in weight-only graphs
(qwen3: Ternary Bonsai), as ``x @ W.T`` with W = s x t materialised exactly in float32 and
per-head q/k norms before RoPE; a ``Float`` one (a full-precision checkpoint, a BitStack
reconstruction) as a plain float32 ``x @ W.T`` with no activation quantization. A ternary
embedding or head is decoded a slice of rows at a time.

In ``llamacpp`` numerics a ternary weight's activations are quantized as llama.cpp's kernel
for its type does (Q8_K, Q8_0), and the x86 AVX2 build's float order is followed where it
decides bits: the TQ kernels' 8 lanes (codes regrouped once per load: _in_kernel_order),
ggml's vectorised exp, the fused RoPE rotation, tinyBLAS's lanes for the F16 K·Q and P·V
products. The hidden states are then llama.cpp's bit for bit; the head and F16/BF16 float
projections run as one BLAS call on inputs rounded to the weight's type, as ggml converts them.

``capture(name, x)``, when given, is called with the float32 input [T, K] of every
projection before it runs (canonical name; q, k and v receive the same array object, as do
gate and up). The array is made read-only: a capture reads it, or copies what it keeps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from ..codecs import codec_class, list_codecs
from ..codecs._scales import coarsest, to_codec_scales
from ..errors import BitpackError
from ..models.floats import STORAGE, round_through
from ..models.model import Float, Kind, Model, Ternary
from .numerics import (
    MODES,
    Numerics,
    bitlinear,
    bitlinear_q8_0,
    bitlinear_q8k,
    ggml_silu,
    lane_matmul,
    rms_norm,
    rope_neox,
    rope_tables,
    rope_tables_ggml,
    silu,
    softmax,
    tq_lane_order,
)

F32 = np.float32
HEAD_ROWS = 8192  # vocabulary rows of the head widened at a time
Capture = Callable[[str, np.ndarray], None]  # (canonical projection name, its float32 input [T, K])


class Executor:
    def __init__(self, model: Model, numerics: str = "exact", capture: Capture | None = None,
                 keep_codes: bool | str = False) -> None:
        """``keep_codes``: keep every ternary projection's decoded codes (int8, one byte per weight)
        after its first use, so later ``forward`` calls skip decoding; ``"float32"`` keeps them
        widened (four bytes per weight), so later calls skip the widening too and the BLAS calls
        read the kept arrays directly. Off by default, which holds one projection at a time."""
        if numerics not in MODES:
            raise BitpackError(f"unknown numerics mode {numerics!r} (known: {', '.join(MODES)}, hf)")
        if model.rotated and model.rotation is None:  # never run as if plain (qwen3.md §9.4)
            raise BitpackError(f"{model.source} stores its weights Hadamard-rotated (key {model.rotated}) under a "
                               f"contract bitpack does not run ({model.rotation_problem}); it does not run this "
                               "model or compare its logits (verify compares its tensors)")
        self.rotation = model.rotation  # applied in every numerics mode (qwen3.md §7)
        self.model = model
        self.n: Numerics = MODES[numerics]
        self.hp = model.hparams
        self.capture = capture
        self._entries = {e.name: e for e in model.entries}
        self._code_buffer = np.empty(0, dtype=F32)  # float32 codes of the current projection, reused
        self._kept: dict[str, Ternary] | None = {} if keep_codes else None
        self._kept_dtype = F32 if keep_codes == "float32" else np.int8
        self._whole: dict[str, Ternary] = {}  # a ternary table whose rows cannot decode alone

    def _codes_f32(self, codes: np.ndarray) -> np.ndarray:
        """The int8 codes widened to float32 (BLAS input, §8) in one buffer that every projection
        reuses: no fresh allocation (and page faults) per projection. Valid until the next call.
        Codes kept as float32 are returned as they are (read only)."""
        if codes.dtype == F32:
            return codes
        if self._code_buffer.size < codes.size:
            self._code_buffer = np.empty(codes.size, dtype=F32)
        out = self._code_buffer[: codes.size].reshape(codes.shape)
        np.copyto(out, codes, casting="unsafe")
        return out

    # -- weights -------------------------------------------------------------------
    def _stored(self, name: str) -> Float:
        value = self._entries[name].load()
        assert isinstance(value, Float)
        return value

    def _widen(self, value: Float) -> np.ndarray:
        """Float32 values of a stored tensor (a mode may round them to its model dtype)."""
        return np.ascontiguousarray(value.values, dtype=F32)

    def _float(self, name: str) -> np.ndarray:
        return self._widen(self._stored(name))

    def _rows(self, table: Float, ids: np.ndarray) -> np.ndarray:
        return self._widen(Float(table.raw[ids], table.stored))

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        """One projection: its weights are loaded here, used once and their pages dropped. A
        folded weight (rotation.py) multiplies the transformed input H(s ⊙ x)."""
        if self.rotation is not None and name in self.rotation.folded:
            x = self.rotation.transform(x)
        if self.capture is not None:
            x.flags.writeable = False  # the executor never writes into its activations in place
            self.capture(name, x)
        entry = self._entries[name]
        if self._kept is not None and name in self._kept:
            return self._ternary_linear(x, name, self._kept[name])
        value = entry.load()
        if isinstance(value, Float):
            y = self._float_linear(x, value)
            if entry.release:  # after the matmul: an F32 weight may be the file's own pages
                entry.release()
            return y
        assert isinstance(value, Ternary)
        if entry.release:  # the codes are decoded copies: the file's pages can go
            entry.release()
        value = self._in_kernel_order(entry.stored, value)
        if self._kept is not None:
            self._kept[name] = dataclasses.replace(value, codes=value.codes.astype(self._kept_dtype, copy=False))
        return self._ternary_linear(x, name, value)

    def _float_linear(self, x: np.ndarray, weight: Float) -> np.ndarray:
        """A full-precision projection: x @ W.T in float32, no activation quantization."""
        return self._float_matmul(self._in_weight_dtype(x, weight.stored), self._widen(weight))

    def _in_weight_dtype(self, x: np.ndarray, stored: str) -> np.ndarray:
        """ggml converts the activations to an F16/BF16 weight's type before the matmul."""
        return round_through(x, stored) if self.n.head_in_weight_dtype and stored in STORAGE else x

    def _in_kernel_order(self, stored: str, t: Ternary) -> Ternary:
        """The weight with its columns in the order the mode's kernel for ``stored`` sums them
        (the x86 TQ kernels' lanes: tq_lane_order), once per load; only _ternary_matmul reads
        the result, and any order within a 256-block leaves its scales the same."""
        if self._activation_quant(stored) == "q8_K":
            return dataclasses.replace(t, codes=tq_lane_order(t.codes))
        return t

    def _ternary_linear(self, x: np.ndarray, name: str, t: Ternary) -> np.ndarray:
        entry = self._entries[name]
        return self._ternary_matmul(x, entry.stored, t, entry.source_params)

    def _ternary_matmul(self, x: np.ndarray, stored: str, t: Ternary, params: dict | None = None) -> np.ndarray:
        """x times a ternary weight whose codes are in kernel order (_in_kernel_order): as the
        numerics mode's runtime kernel for the stored type computes it, else a BitLinear (BitNet
        graphs), else x @ W.T in float32 with W = s x t materialised exactly (weight-only graphs,
        qwen3.md §7: no activation quantization)."""
        scale = coarsest(t.scale, t.codes)  # one layout's groups or another's: the same sums
        scale = scale.astype(F32) if np.ndim(scale) else F32(scale)
        codes, scheme = self._codes_f32(t.codes), self._activation_quant(stored)
        if scheme == "q8_K":
            if (params or {}).get("scale_mode") == "separate":  # blocks 1.0, then x .scale
                return bitlinear_q8k(x, codes, F32(1), F32(scale))
            if np.ndim(scale):  # the kernel scales every 256-block by its own d
                block = to_codec_scales(scale, t.codes, "group", 256, "f32", stored)
            else:
                block = F32(np.float16(scale))
            return bitlinear_q8k(x, codes, block, None)
        if scheme == "q8_0":  # the weight type's own groups, each scaled after its Q8_0 blocks
            group = codec_class(stored).group_size
            return bitlinear_q8_0(x, codes, to_codec_scales(t.scale, t.codes, "group", group, "f32", stored))
        if self.model.arch.weight_only:  # W = s x t formed in place: never in kept codes
            weights = codes.copy() if codes is t.codes else codes
            return self._float_matmul(self._in_weight_dtype(x, stored), _scaled(weights, scale))
        return bitlinear(x, codes, scale, self.n, f32_scale=scheme == "f32-scale")

    def _float_matmul(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return (x @ weight.T).astype(F32)

    def _activation_quant(self, stored: str) -> str | None:
        """How this numerics mode's runtime quantizes activations for a weight stored as
        ``stored``, as the codec declares it (None: per token, the mode's default)."""
        if self.n.runtime is None or stored not in list_codecs():
            return None
        return codec_class(stored).activation_quant.get(self.n.runtime)

    # -- graph -----------------------------------------------------------------------
    def forward(self, tokens: list[int] | np.ndarray, with_head: bool = True) -> np.ndarray:
        """Logits [T, vocab] (float32) for every position of ``tokens``; with ``with_head=False``
        the final-normed hidden states [T, hidden] instead, without the head (calibration
        needs only the projections' inputs)."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(-1)
        hp = self.hp
        if ids.size == 0:
            raise BitpackError("no tokens to run")
        rows = self._entries["token_embd.weight"].shape[0]
        if ids.min() < 0 or ids.max() >= rows:
            raise BitpackError(f"token ids must lie in 0..{rows - 1}")
        h = self._embed(ids)
        cos, sin = self._rope_tables(np.arange(ids.size))
        for layer in range(hp.n_layers):
            h = self._layer(h, layer, cos, sin)
        z = self._norm(h, "output_norm.weight")
        if not with_head:
            if self._entries["token_embd.weight"].release:
                self._entries["token_embd.weight"].release()
            return z
        head_name = "output.weight" if "output.weight" in self._entries else "token_embd.weight"
        head = self._entries[head_name]
        rows = head.shape[0]
        if self.rotation is not None and head_name in self.rotation.folded | self.rotation.latent:
            z = self.rotation.transform(z)  # z·eᵀ = H(s ⊙ z)·(H(s ⊙ e))ᵀ for a latent table too
        logits = np.empty((z.shape[0], rows), dtype=F32)
        if head.coded:  # a ternary head: decoded a slice of rows at a time, never whole
            for lo in range(0, rows, HEAD_ROWS):
                t = self._in_kernel_order(head.stored, self._table_rows(head, lo, min(rows, lo + HEAD_ROWS)))
                logits[:, lo : lo + t.codes.shape[0]] = self._ternary_matmul(z, head.stored, t)
        else:  # the head is the largest matrix: widen it to float32 a slice of rows at a time
            table = self._stored(head_name)
            z = self._in_weight_dtype(z, table.stored)
            for lo in range(0, rows, HEAD_ROWS):
                part = self._widen(Float(table.raw[lo : lo + HEAD_ROWS], table.stored))
                logits[:, lo : lo + part.shape[0]] = self._head(z, part)
        self._whole.clear()
        for name in {head_name, "token_embd.weight"}:
            if self._entries[name].release:
                self._entries[name].release()
        return logits

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        """h = E[ids]; a ternary table's rows are decoded per token (exact: s x t in float32,
        as ggml's get_rows dequantizes them), never the whole table widened."""
        entry = self._entries["token_embd.weight"]
        if not entry.coded:
            rows = self._rows(self._stored("token_embd.weight"), ids)
        else:
            rows = np.concatenate([self._table_values(self._table_rows(entry, int(i), int(i) + 1)) for i in ids])
        if self.rotation is not None and entry.name in self.rotation.latent:  # stored H(s ⊙ e): restore e
            rows = self.rotation.restore(rows)
        return rows

    def _table_rows(self, entry, lo: int, hi: int) -> Ternary:
        """Rows lo:hi of a ternary embedding or head: decoded alone where the layout allows,
        else from one decode of the whole table kept until the head is done."""
        if entry.load_rows is not None:
            return entry.load_rows(lo, hi)
        if entry.name not in self._whole:
            self._whole[entry.name] = entry.load()
        t = self._whole[entry.name]
        scale = t.scale[lo:hi] if np.ndim(t.scale) else t.scale
        return Ternary(t.codes[lo:hi], scale)

    def _table_values(self, t: Ternary) -> np.ndarray:
        return t.values

    # -- the operations a numerics mode may round differently --------------------------
    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return rms_norm(x, self._float(name), self.hp.rms_norm_eps, self.n)

    def _rope_tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tables = rope_tables_ggml if self.n.ggml_rope else rope_tables
        return tables(positions, self.hp.head_dim, self.hp.rope_theta, self.hp.rope_scaling)

    def _rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        return rope_neox(x, cos, sin, fused=self.n.avx2_kernels)

    def _gate(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        if self.model.arch.hidden_act == "relu2":
            act = np.maximum(gate, F32(0))
            act = act * act
        else:  # silu
            act = ggml_silu(gate) if self.n.avx2_kernels else silu(gate)
        return (act * up).astype(F32)

    def _add(self, h: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (h + y).astype(F32)

    def _head(self, z: np.ndarray, head: np.ndarray) -> np.ndarray:
        return (z @ head.T).astype(F32)

    def _layer(self, h: np.ndarray, i: int, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        hp, n = self.hp, self.n
        p = f"blk.{i}."
        a = self._norm(h, p + "attn_norm.weight")
        t = h.shape[0]
        q = self._linear(a, p + "attn_q.weight").reshape(t, hp.n_heads, hp.head_dim)
        k = self._linear(a, p + "attn_k.weight").reshape(t, hp.n_kv_heads, hp.head_dim)
        v = self._linear(a, p + "attn_v.weight").reshape(t, hp.n_kv_heads, hp.head_dim).transpose(1, 0, 2)
        if self.model.arch.qk_norm:  # per head, over its d values, before RoPE (qwen3.md §3)
            q, k = self._norm(q, p + "attn_q_norm.weight"), self._norm(k, p + "attn_k_norm.weight")
        q, k = self._rope(q.transpose(1, 0, 2), cos, sin), self._rope(k.transpose(1, 0, 2), cos, sin)
        if n.f16_keys:
            q, k = q.astype(np.float16).astype(F32), k.astype(np.float16).astype(F32)
        if n.f16_values:
            v = v.astype(np.float16).astype(F32)
        o = self._attention(q, k, v).transpose(1, 0, 2).reshape(t, hp.n_heads * hp.head_dim)
        if self.model.arch.sub_norms:
            o = self._norm(o, p + "attn_sub_norm.weight")
        h = self._add(h, self._linear(o, p + "attn_output.weight"))
        b = self._norm(h, p + "ffn_norm.weight")
        f = self._gate(self._linear(b, p + "ffn_gate.weight"), self._linear(b, p + "ffn_up.weight"))
        if self.model.arch.sub_norms:
            f = self._norm(f, p + "ffn_sub_norm.weight")
        return self._add(h, self._linear(f, p + "ffn_down.weight"))

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Causal GQA: query head h reads KV head h // (n_heads / n_kv_heads)."""
        group = self.hp.n_heads // self.hp.n_kv_heads
        k = np.repeat(k, group, axis=0)
        v = np.repeat(v, group, axis=0)
        scale = F32(1) / np.sqrt(F32(self.hp.head_dim))
        matmul = lane_matmul if self.n.avx2_kernels else np.matmul  # F16 K and V: ggml's lane order
        scores = (matmul(q, k.transpose(0, 2, 1)) * scale).astype(F32)
        t = q.shape[1]
        scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, F32(-np.inf)).astype(F32)
        return matmul(softmax(scores, self.n), v).astype(F32)


def kept_codes_bytes(model: Model) -> int:
    """The memory ``keep_codes=True`` holds after one pass: a byte per weight of every ternary
    projection (embedding and head are never kept); 0 when the projections load as floats."""
    if model.precision != "ternary":
        return 0
    return sum(math.prod(e.shape) for e in model.entries if e.kind is Kind.TERNARY)


def _scaled(codes: np.ndarray, scale) -> np.ndarray:
    """W = s x t in float32, in place in the float32 codes (every product is exact)."""
    if np.ndim(scale) == 0:
        codes *= scale
    else:
        m, groups = scale.shape
        codes.reshape(m, groups, -1)[...] *= scale[:, :, None]
    return codes
