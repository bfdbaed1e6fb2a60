"""Calibration for BitStack: text -> tokens (encode_text), windows as the reference draws
them, and activation statistics from the executor's capture hook (spec/bitstack.md §2.1)."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from bitpack.bitstack import avd
from bitpack.errors import BitpackError
from bitpack.executor.forward import Executor
from bitpack.models.text import encode_text
from bitpack.pipelines.calibrate import ActStats, collect, plan, windows
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.open import open_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
TEXT = (ROOT / "fixtures" / "calibration.txt").read_text()
SAMPLE = "The model weight, ternary scale.\nZebra 42 h\u00e9llo  world! \U0001f600 It was the best of times."


@pytest.fixture(scope="module")
def model():
    return open_model(MODELS / "llama-f16")


@pytest.fixture(scope="module")
def tokens(model):
    return encode_text(model, TEXT)


# ----------------------------------------------------------------------------- encode_text


@pytest.mark.parametrize("name", ["llama-f16", "b158-packed"])
def test_tokenizer_json_is_run_by_tokenizers(name):
    from tokenizers import Tokenizer

    ids = encode_text(open_model(MODELS / name), SAMPLE)
    direct = Tokenizer.from_file(str(MODELS / name / "tokenizer.json")).encode(SAMPLE).ids
    assert ids == direct
    config = json.loads((MODELS / name / "config.json").read_text())
    assert ids[0] == config["bos_token_id"] and ids.count(config["bos_token_id"]) == 1  # the template's BOS


def test_tokenizer_model_is_run_by_sentencepiece():
    import sentencepiece

    ids = encode_text(open_model(MODELS / "bitnet-f32-sharded"), SAMPLE)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(MODELS / "bitnet-f32-sharded" / "tokenizer.model"))
    assert ids == sp.encode(SAMPLE) and ids[0] != sp.bos_id()  # no BOS: SentencePiece adds none
    assert sp.decode(ids) == SAMPLE


def test_a_gguf_encodes_text_with_its_own_vocabulary_as_its_source_does(tmp_path):
    out = convert(MODELS / "b158-packed", "tq2_0", ConvertOptions(output=tmp_path / "m.gguf"))
    text = TEXT[:2000]
    assert encode_text(open_model(out["output"]), text) == encode_text(open_model(MODELS / "b158-packed"), text)


def test_calibration_text_size(tokens):
    assert 20_000 <= len(TEXT.encode()) <= 40_000 and TEXT.isascii()
    assert len(tokens) == 21_424


# ----------------------------------------------------------------------------- windows


def reference_windows(ids, seqlen, nsamples, seed):
    """bitstack data_utils.get_wikitext2, verbatim but for the tensors."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        i = random.randint(0, len(ids) - seqlen - 1)
        out.append(ids[i : i + seqlen])
    return out


def test_windows_are_drawn_as_the_reference_draws_them(tokens):
    got = windows(tokens, 128, 40, seed=0)
    assert got == reference_windows(tokens, 128, 40, 0)
    assert len(got) == 40 and all(len(w) == 128 for w in got)
    assert windows(tokens, 128, 40, seed=0) == got and windows(tokens, 128, 40, seed=1) != got
    text = " ".join(map(str, tokens))
    assert all(" ".join(map(str, w)) in text for w in got[:5])  # contiguous slices of the stream


def test_a_text_too_short_for_a_window_is_refused():
    with pytest.raises(BitpackError, match="has 100 tokens; windows of 128 tokens need at least 129"):
        windows(list(range(100)), 128, 4)
    assert len(windows(list(range(129)), 128, 3)) == 3  # exactly enough: every window is tokens[0:128]


def test_default_plan(model, tokens):
    # seqlen: min(2048, context length 128); windows: 256 capped at len // seqlen
    assert plan(model, len(tokens)) == (128, len(tokens) // 128) == (128, 167)
    assert plan(model, 10**6) == (128, 256)
    assert plan(model, 130) == (128, 1)
    assert plan(model, len(tokens), seqlen=64, n_samples=300) == (64, 300)


# ----------------------------------------------------------------------------- statistics


@pytest.fixture(scope="module")
def calibrated(model, tokens):
    ws = windows(tokens, 64, 6, seed=0)
    captured = {}  # every projection's full input, per window: the direct computation below

    def keep(name, x):
        captured.setdefault(name, []).append(np.array(x))

    ex = Executor(model, "exact", capture=keep)
    for w in ws:
        ex.forward(w)
    steps = []
    stats = collect(model, ws, probe_rows=100, seed=3, progress=lambda done, total: steps.append((done, total)))
    return ws, captured, stats, steps


def test_one_stats_per_projection(model, calibrated):
    ws, _, stats, steps = calibrated
    assert set(stats) == {e.name for e in model.ternary}
    for name, s in stats.items():
        k = model.entry(name).shape[1]
        assert isinstance(s, ActStats) and s.n_samples == len(ws)
        assert s.norm_sums.dtype == np.float64 and s.norm_sums.shape == (k,)
        assert s.probe.dtype == np.float32 and s.probe.shape == (100, k)
    assert steps == [(i + 1, len(ws)) for i in range(len(ws))]


def test_act_scale_is_the_reference_formula(calibrated):
    """s_j = (1/N) sum_b sqrt(sum_t X[b,t,j]^2) + 1e-3, on the captured activations."""
    _, captured, stats, _ = calibrated
    for name, xs in captured.items():
        per_sample = np.stack([np.sqrt((x.astype(np.float64) ** 2).sum(axis=0)) for x in xs])
        np.testing.assert_allclose(stats[name].norm_sums, per_sample.sum(axis=0), rtol=1e-12)
        want = (per_sample.mean(axis=0) + 1e-3).astype(np.float32)
        np.testing.assert_allclose(avd.act_scale(stats[name].norm_sums, stats[name].n_samples), want, rtol=1e-7)
    s = avd.act_scale(stats["blk.0.attn_q.weight"].norm_sums, stats["blk.0.attn_q.weight"].n_samples)
    assert s.max() / np.median(s) > 10  # the fixture's outlier channels show up


def test_probe_rows_are_input_rows(calibrated):
    _, captured, stats, _ = calibrated
    for name, xs in captured.items():
        rows = [row.tobytes() for row in np.concatenate(xs)]
        j = 0  # the probe is a subsequence of the input rows: distinct token positions, in stream order
        for row in stats[name].probe:
            while j < len(rows) and rows[j] != row.tobytes():
                j += 1
            assert j < len(rows), name
            j += 1
    q, k, v = (stats[f"blk.1.attn_{p}.weight"].probe for p in "qkv")
    assert np.array_equal(q, k) and np.array_equal(q, v)  # the same token positions everywhere


def test_probe_sampling_is_seeded(model, tokens, calibrated):
    ws, _, stats, _ = calibrated
    again = collect(model, ws, probe_rows=100, seed=3)
    other = collect(model, ws, probe_rows=100, seed=4)
    for name in stats:
        assert np.array_equal(again[name].probe, stats[name].probe)
        assert np.array_equal(again[name].norm_sums, stats[name].norm_sums)
        assert np.array_equal(other[name].norm_sums, stats[name].norm_sums)  # the sums do not depend on it
    assert not np.array_equal(other["blk.0.attn_q.weight"].probe, stats["blk.0.attn_q.weight"].probe)


def test_probe_holds_at_most_every_row(model, tokens):
    ws = windows(tokens, 16, 2)
    stats = collect(model, ws, probe_rows=1000)
    assert stats["blk.0.ffn_down.weight"].probe.shape == (32, 344)


def test_collect_needs_windows(model):
    with pytest.raises(BitpackError, match="no calibration windows"):
        collect(model, [])
