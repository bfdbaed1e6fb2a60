"""Full-precision checkpoints (an ordinary Llama: fixtures/models/llama-f16): read as float,
never ternarized, refused by every ternary target, run by the executor as float matmuls."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack

from bitpack.codecs import codec_class, list_codecs
from bitpack.errors import BitpackError
from bitpack.executor import NUMERICS, Executor, executor
from bitpack.models.arch import Kind
from bitpack.models.gguf_target import plan_gguf
from bitpack.models.hf_target import plan_hf
from bitpack.models.model import Float, Ternary
from bitpack.pipelines.inspect import inspect
from bitpack.pipelines.open import open_model

MODELS = Path(__file__).resolve().parents[1] / "fixtures" / "models"
F16 = MODELS / "llama-f16"
TOKENS = [298, 40, 83, 257, 64, 82, 264, 273, 68, 82, 5, 250, 13, 99, 1, 0, 255, 128]
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def stored_f16(name: str) -> np.ndarray:
    """A tensor as the file holds it, read without bitpack."""
    from safetensors.numpy import load_file

    return load_file(F16 / "model.safetensors")[name]


def test_opens_as_a_full_precision_model():
    model = open_model(F16)
    assert model.precision == "float" and model.layout == "full precision (F16)"
    assert model.arch.name == "llama" and not model.hparams.tied
    hp = model.hparams
    assert (hp.hidden_size, hp.intermediate_size, hp.n_heads, hp.n_kv_heads, hp.head_dim) == (128, 344, 4, 2, 32)
    projections = model.ternary
    assert len(projections) == 7 * hp.n_layers
    for e in model.entries:
        value = e.load()
        assert isinstance(value, Float) and value.stored == "F16" and e.stored == "F16", e.name
        assert value.raw.shape == e.shape
    q = model.entry("blk.1.attn_q.weight").load()
    want = stored_f16("model.layers.1.self_attn.q_proj.weight")
    assert q.raw.dtype == np.float16 and np.array_equal(q.raw, want)  # stored bits, nothing ternarized
    assert np.array_equal(q.values, want.astype(np.float32))
    down = model.entry("blk.0.ffn_down.weight")
    assert down.shape == (128, 344) and down.kind is Kind.TERNARY  # the projection slot, float content


def test_bitnet_checkpoints_are_still_ternary():
    for name in ("b158-bf16", "bitnet-f32-sharded", "b158-packed"):
        model = open_model(MODELS / name)
        assert model.precision == "ternary"
        assert isinstance(model.entry("blk.0.attn_q.weight").load(), Ternary)


def _with_config(tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "m"
    shutil.copytree(F16, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("marker", [
    {"quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}},
    {"is_bitnet_config": True},
    {"weight_bits": 1, "input_bits": 8},
    {"architectures": ["BitnetForCausalLM"]},
])
def test_a_bitnet_marker_makes_float_projections_master_weights(tmp_path, marker):
    model = open_model(_with_config(tmp_path, **marker))
    assert model.precision == "ternary" and model.layout == "master weights (F16)"
    assert isinstance(model.entry("blk.0.attn_q.weight").load(), Ternary)


@pytest.mark.parametrize("key", ["attention_bias", "mlp_bias"])
def test_projection_biases_are_refused(tmp_path, key):
    with pytest.raises(BitpackError, match=f"{key} true; bitpack does not support projection biases"):
        open_model(_with_config(tmp_path, **{key: True}))


@pytest.mark.parametrize("codec", [c for c in list_codecs() if not codec_class(c).lossy])
def test_every_ternary_target_refuses_a_float_model(codec):
    model = open_model(F16)
    plan = plan_gguf if codec_class(codec).container == "gguf" else plan_hf
    with pytest.raises(BitpackError) as err:
        plan(model, codec)
    message = str(err.value)
    assert "full-precision checkpoint" in message and f"{codec} holds ternary weights" in message
    assert "does not silently ternarize" in message and "--to bitstack" in message
    assert "\n" not in message


@pytest.mark.parametrize("codec", ["i2_s", "tq2_0", "hf_packed", "int8"])
def test_convert_refuses_a_float_model_and_writes_nothing(tmp_path, codec):
    from bitpack.pipelines.convert import ConvertOptions, convert

    with pytest.raises(BitpackError, match="full-precision checkpoint.*--to bitstack"):
        convert(F16, codec, ConvertOptions(output=tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


def test_a_bitstack_stack_given_to_a_ternary_target_is_named_as_a_stack(tmp_path):
    from bitpack.pipelines.convert import ConvertOptions, convert

    stack = convert(F16, "bitstack", ConvertOptions(output=tmp_path / "stack", params={"blocks": 2, "rank": 2}))
    with pytest.raises(BitpackError) as err:
        convert(stack["output"], "i2_s", ConvertOptions(output=tmp_path / "out.gguf"))
    message = str(err.value)
    assert "is a BitStack stack" in message and "full-precision" not in message
    assert "the checkpoint the stack was made from" in message and "--to bitstack" in message
    assert not (tmp_path / "out.gguf").exists()


def test_inspect_reports_float_projections():
    report = inspect(F16)
    assert report["layout"] == "full precision (F16)" and report["architecture"] == "llama"
    q = next(t for t in report["tensors"] if t["name"] == "blk.0.attn_q.weight")
    assert q["codec"] is None and q["dtype"] == "F16" and q["bits_per_weight"] == 16 and q["scale"] is None
    assert "ternarized" not in q
    assert report["warnings"] == []
    assert 16 <= report["bits_per_weight"] < 16.1


# ----------------------------------------------------------------------------- executor


def test_float_projections_are_plain_float32_matmuls():
    """Exact mode: every projection is x @ W.T on the widened stored values (checked on
    each projection's captured input against the captured input of the next op)."""
    model = open_model(F16)
    seen = {}
    ex = Executor(model, "exact", capture=lambda name, x: seen.setdefault(name, x))
    ex.forward(TOKENS)
    w = {n: model.entry(f"blk.0.{n}.weight").load().values for n in ("ffn_gate", "ffn_up")}
    x = seen["blk.0.ffn_gate.weight"]
    gate, up = x @ w["ffn_gate"].T, x @ w["ffn_up"].T
    want = (gate / (np.float32(1) + np.exp(-gate))) * up  # the input of down_proj: silu(gate) * up
    np.testing.assert_array_equal(seen["blk.0.ffn_down.weight"], want.astype(np.float32))


def test_capture_sees_every_projection_input_and_changes_nothing():
    model = open_model(F16)
    plain = executor(model, "exact").forward(TOKENS)
    calls = []
    captured = executor(model, "exact", capture=lambda name, x: calls.append((name, x))).forward(TOKENS)
    np.testing.assert_array_equal(plain, captured)
    names = [n for n, _ in calls]
    assert names == [f"blk.{i}.{p}.weight" for i in range(2) for p in PROJECTIONS]
    got = dict(calls)
    for i in range(2):
        q, k, v = (got[f"blk.{i}.{p}.weight"] for p in ("attn_q", "attn_k", "attn_v"))
        assert q is k is v  # one input, the same array each time
        assert got[f"blk.{i}.ffn_gate.weight"] is got[f"blk.{i}.ffn_up.weight"]
    for name, x in calls:
        k = model.entry(name).shape[1]
        assert x.shape == (len(TOKENS), k) and x.dtype == np.float32, name
        assert not x.flags.writeable
        assert np.isfinite(x).all()


@pytest.mark.parametrize("numerics", NUMERICS)
def test_every_numerics_mode_runs_a_float_model(numerics):
    model = open_model(F16)
    exact = executor(model, "exact").forward(TOKENS)
    seen = []
    logits = executor(model, numerics, capture=lambda name, x: seen.append(name)).forward(TOKENS)
    assert logits.shape == (len(TOKENS), 300) and np.isfinite(logits).all()
    assert len(seen) == 14
    rel = np.abs(logits - exact).max() / np.abs(exact).max()
    assert rel < 2e-2, rel  # f16 caches / f16 model dtype, nothing ternarized
    assert (logits.argmax(-1) == exact.argmax(-1)).mean() >= 0.9


def test_logits_are_not_flat():
    """The fixture's head gives peaked distributions on real text (top-1 margins matter for
    block-ordering and verification tests that compare argmaxes)."""
    from bitpack.models.text import encode_text

    model = open_model(F16)
    text = (MODELS.parent / "calibration.txt").read_text()[:2000]
    logits = executor(model, "exact").forward(encode_text(model, text)[:128])
    top = np.sort(logits, axis=-1)
    margins = top[:, -1] - top[:, -2]
    assert logits.std() > 2 and np.median(margins) > 0.5, (logits.std(), np.median(margins))


def test_without_the_head_forward_returns_the_final_hidden_states():
    model = open_model(F16)
    z = executor(model, "exact").forward(TOKENS, with_head=False)
    head = model.entry("output.weight").load().values
    np.testing.assert_array_equal((z @ head.T).astype(np.float32), executor(model, "exact").forward(TOKENS))


# ----------------------------------------------------------------------------- bitpack run --prompt


def test_run_prompt_tokenizes_with_the_models_tokenizer():
    from bitpack.models.text import encode_text

    prompt = "It was the best of times, it was the worst of times"
    by_prompt = bitpack("run", F16, "--prompt", prompt, "--json")
    assert by_prompt.returncode == 0, by_prompt.stderr
    doc = json.loads(by_prompt.stdout)
    ids = encode_text(open_model(F16), prompt)
    assert doc["tokens"] == ids and doc["prompt"] == prompt and ids[0] == 298  # the template's BOS
    by_ids = json.loads(bitpack("run", F16, "--tokens", ",".join(map(str, ids)), "--json").stdout)
    assert by_ids["positions"] == doc["positions"] and "prompt" not in by_ids


@pytest.mark.parametrize("args, message", [
    (["--prompt", "hi", "--tokens", "1,2"], "--tokens and --prompt cannot be used together"),
    ([], "give the input as --tokens 1,2,3 or --prompt TEXT"),
])
def test_run_needs_exactly_one_input(args, message):
    done = bitpack("run", F16, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
