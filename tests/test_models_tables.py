"""The model tables and the numerics bitpack applies when reading checkpoints."""

import numpy as np
import pytest

from bitpack.models.arch import ARCHITECTURES, architecture, decide, permute_rows, slots
from bitpack.models.ternarize import absmean


def test_absmean_worked_example():
    # spec/checkpoints.md §2
    w = np.array([[0.9, -0.2, 0.05, -1.4], [0.3, 0.0, -0.6, 0.25]], dtype=np.float32)
    t = absmean(w)
    np.testing.assert_array_equal(t.codes, [[1, 0, 0, -1], [1, 0, -1, 1]])
    assert t.codes.dtype == np.int8
    s_q = np.float32(1) / np.float32(0.4625)
    assert t.scale == np.float32(1) / s_q


def test_absmean_rounds_half_to_even():
    t = absmean(np.array([0.5, -0.5, 1.5, 1.5], dtype=np.float32))
    np.testing.assert_array_equal(t.codes, [0, 0, 1, 1])
    assert t.borderline == 4


@pytest.mark.parametrize("seed", range(5))
def test_absmean_matches_the_reference_formula(seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((64, 96)) * rng.uniform(0.001, 3)).astype(np.float32)
    w[0, :8] = 0  # exact zeros stay zero
    a = np.mean(np.abs(w), dtype=np.float32)
    s_q = np.float32(1) / max(a, np.float32(1e-5))
    reference = np.clip(np.rint(w * s_q), -1, 1).astype(np.int8)
    t = absmean(w)
    np.testing.assert_array_equal(t.codes, reference)
    assert t.scale == np.float32(1) / s_q


def test_absmean_all_zero_uses_the_floor():
    t = absmean(np.zeros((4, 4), np.float32))
    assert not t.codes.any() and t.scale == np.float32(1) / (np.float32(1) / np.float32(1e-5))


def test_architecture_decision_table():
    assert decide("relu2", True).name == "bitnet-b1.58"
    assert decide("silu", True).name == "bitnet"
    assert decide("silu", False).name == "llama"
    assert decide("relu2", False) is None
    assert decide("gelu", True) is None
    assert architecture("bitnet-25").name == "bitnet-b1.58"


@pytest.mark.parametrize("arch, tied, expected", [
    ("bitnet-b1.58", True, 2 * 11 + 2),
    ("bitnet", True, 2 * 11 + 2),
    ("llama", False, 2 * 9 + 3),
    ("llama", True, 2 * 9 + 2),
    ("bitnet-b1.58", False, 2 * 11 + 2),  # the graph always multiplies by token_embd
])
def test_tensor_counts(arch, tied, expected):
    assert len(slots(ARCHITECTURES[arch], 2, tied)) == expected


def test_llama_qk_permutation_matches_the_spec_example_and_inverts():
    # checkpoints.md §5, d = 4: GGUF rows 0, 1, 2, 3 come from HF rows 0, 2, 1, 3
    np.testing.assert_array_equal(permute_rows(4, 4, to_gguf=True), [0, 2, 1, 3])
    rows = np.arange(3 * 8)
    to = permute_rows(24, 8, to_gguf=True)
    back = permute_rows(24, 8, to_gguf=False)
    np.testing.assert_array_equal(rows[to][back], rows)
    # within each head, GGUF row 2i + j <- HF row j*d/2 + i
    for h in range(3):
        for i in range(4):
            for j in range(2):
                assert to[h * 8 + 2 * i + j] == h * 8 + j * 4 + i


def test_key_length_is_written_only_when_head_dim_is_not_hidden_over_heads():
    from bitpack.models.hparams import HParams

    hp = HParams(hidden_size=256, intermediate_size=512, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=64,
                 vocab_size=10, context_length=8, rms_norm_eps=1e-5, rope_theta=1e4, tied=True, hidden_act="silu")
    assert not any("key_length" in key for key, _, _ in hp.gguf_kv("llama"))
    hp.head_dim = 128
    kv = {key: value for key, value, _ in hp.gguf_kv("llama")}
    assert kv["llama.attention.key_length"] == 128 and kv["llama.attention.value_length"] == 128
    back = HParams.from_gguf(kv | {"llama.embedding_length": 256}, "llama", "silu", True, "test")
    assert back.head_dim == 128
