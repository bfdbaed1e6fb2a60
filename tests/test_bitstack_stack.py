"""BitStack stacks on disk: writing, reading at a budget, the order strategies, the budget table,
container copies, the reference layout, hostile files and atomicity (formats/bitstack.md)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import bitpack
from bitpack.bitstack import avd
from bitpack.bitstack.budget import BudgetTable, parse_size, select
from bitpack.bitstack.order import check_order, error_order, ppl_order, uniform_order
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.safetensors_read import Checkpoint
from bitpack.containers.safetensors_write import SafetensorsWriter
from bitpack.errors import BitpackError
from bitpack.models import stack_target
from bitpack.models.arch import Kind, architecture, slots
from bitpack.models.hparams import HParams
from bitpack.models.model import Entry, Float, Model
from bitpack.models.stack_format import KEY_ORDER, Naming, reference_key
from bitpack.models.stack_scoring import stacked_model
from bitpack.models.stack_source import (
    is_stack,
    open_stack,
    open_stack_files,
    stack_report,
)
from bitpack.models.stack_target import weight_f32, write_stack
from bitpack.parallel import blas_threads
from bitpack.pipelines.ppl import perplexity

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "models"
BLOCKS, RANK = 3, 2


def decompose(*args, **kwargs) -> avd.Decomposition:
    """avd.decompose as the writer runs it: OpenBLAS on one thread (LAPACK's results can
    depend on its thread count)."""
    with blas_threads(1):
        return avd.decompose(*args, **kwargs)


# -- a tiny in-memory float model ----------------------------------------------------------

def tiny_model(seed: int = 0, layers: int = 1) -> Model:
    hp = HParams(hidden_size=16, intermediate_size=24, n_layers=layers, n_heads=2, n_kv_heads=1, head_dim=8,
                 vocab_size=32, context_length=64, rms_norm_eps=1e-5, rope_theta=10000.0, tied=False,
                 hidden_act="silu")
    arch = architecture("llama")
    rng = np.random.default_rng(seed)
    entries = []
    for name, slot, _ in slots(arch, hp.n_layers, hp.tied):
        if slot.kind is Kind.TERNARY:
            shape = hp.ternary_shape(name)
            value = (rng.standard_normal(shape) * rng.uniform(0.05, 0.5)).astype(np.float32)
        elif slot.kind is Kind.NORM:
            shape = (hp.hidden_size,)
            value = (1 + 0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            shape = (hp.vocab_size, hp.hidden_size)
            value = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        stored = "F16" if slot.kind is Kind.EMBEDDING else "F32"
        raw = value.astype(np.float16) if stored == "F16" else value
        entries.append(Entry(name, slot.kind, shape, stored, lambda r=raw, s=stored: Float(r, s)))
    return Model(source="tiny", container="safetensors", layout="float", arch=arch, hparams=hp, entries=entries,
                 files=[], precision="float")


@dataclass
class FakeStats:
    norm_sums: np.ndarray
    n_samples: int
    probe: np.ndarray | None


def fake_calibration(model: Model, seed: int = 1) -> dict[str, FakeStats]:
    rng = np.random.default_rng(seed)
    out = {}
    for e in model.ternary:
        k = e.shape[1]
        probe = (rng.standard_normal((12, k)) * rng.uniform(0.1, 3.0, k)).astype(np.float32)
        out[e.name] = FakeStats(np.abs(probe).sum(axis=0).astype(np.float64) * 3, 4, probe)
    return out


def block_tensors(stack) -> dict[str, bytes]:
    """Bytes of every block and act_scale tensor, keyed by (canonical, part, i)."""
    out = {}
    for m in stack.matrices:
        for i in range(stack.n_blocks):
            for part, tensor in zip(("q", "u", "vt"), stack.naming.block(m.name, i)):
                out[f"{m.name}/{part}/{i}"] = stack.store.raw(tensor).tobytes()
        if m.act_scale:
            out[f"{m.name}/act_scale"] = stack.store.raw(m.act_scale).tobytes()
    return out


# -- module fixtures: a few stacks written once --------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stacks")


@pytest.fixture(scope="module")
def llama() -> Model:
    return bitpack.open_model(FIXTURES / "llama-f16")


@pytest.fixture(scope="module")
def llama_stack(work, llama) -> tuple[Path, dict]:
    out = work / "llama-bitstack"
    report = write_stack(llama, out, blocks=BLOCKS, rank=RANK)
    return out, report


@pytest.fixture(scope="module")
def tiny_calibrated(work) -> tuple[Path, dict, Model, dict]:
    model = tiny_model(3, layers=2)
    cal = fake_calibration(model)
    out = work / "tiny-cal"
    report = write_stack(model, out, blocks=4, rank=2, calibration=cal, shard_bytes=6000)
    return out, report, model, cal


# -- sizes and the table ---------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("300MB", 300_000_000), ("300 MB", 300_000_000), ("1.5GiB", 3 * 2**29), ("750MiB", 750 * 2**20),
    ("12KB", 12_000), ("12kib", 12 * 1024), ("512B", 512), ("4096", 4096), (4096, 4096), ("2GB", 2 * 10**9),
])
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("bad", ["", "MB", "12 parsecs", "-5MB", "1e3", "3.5.1GB", None, True, -1])
def test_parse_size_refuses_garbage(bad):
    with pytest.raises(BitpackError):
        parse_size(bad)


def test_table_select_and_smallest_budget_message():
    table = BudgetTable(["a", "b", "c"], [10, 20, 30], 100, 3, [2, 0, 1, 0, 2, 1])
    assert list(table.bytes) == [160, 190, 200, 220, 230, 260, 280]
    assert select(table, 160) == 0 and select(table, 219) == 2 and select(table, 10**9) == 6
    assert table.blocks(3) == {"a": 2, "b": 2, "c": 2}
    with pytest.raises(BitpackError, match=r"159 bytes .* smallest configuration of this stack: 160 bytes"):
        select(table, 159)
    assert [e["bytes"] for e in table.summary()] == list(table.bytes)
    assert table.summary()[1]["blocks_per_matrix"] == {"min": 1, "max": 2, "mean": round(4 / 3, 6)}


def test_orders_are_level_major_and_importance_sorted():
    errs = [np.array([9.0, 5.0, 3.0, 2.0]), np.array([9.0, 4.0, 3.5, 1.0]), np.array([9.0, 8.0, 1.0, 0.5])]
    order = error_order(errs, [1, 1, 2], 3)
    # level 1: reductions 2, 0.5, 7/2=3.5 -> c, a, b; level 2: 1, 2.5, 0.5/2 -> b, a, c
    assert order == [2, 0, 1, 1, 0, 2]
    assert check_order(order, 3, 3) == order
    assert uniform_order(3, 3) == [0, 1, 2, 0, 1, 2]
    with pytest.raises(BitpackError, match="level 1"):
        check_order([0, 0, 1, 2, 1, 0], 3, 3)
    with pytest.raises(BitpackError, match="steps"):
        check_order([0, 1], 3, 3)


def test_ppl_order_nan_rule():
    # level 1: b is NaN -> its level-2 value (3.0) + max of level 1 (5.0) = 8.0
    table = np.array([[4.0, np.nan, 5.0], [2.0, 3.0, 1.0]])
    assert ppl_order(table) == [0, 2, 1, 2, 0, 1]
    with pytest.raises(BitpackError, match="last level"):
        ppl_order(np.array([[1.0, 2.0], [np.nan, 1.0]]))


# -- writing and reading ---------------------------------------------------------------------

def test_full_stack_reproduces_in_memory_reconstruction_bitwise(llama, llama_stack):
    out, report = llama_stack
    model = open_stack(out)
    assert model.stack.how == "all" and set(model.stack.blocks.values()) == {BLOCKS}
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_down.weight", "blk.0.attn_k.weight"):
        w = weight_f32(llama.entry(name).load())
        d = decompose(w, BLOCKS, RANK)
        want = avd.reconstruct(d.blocks, w.shape)
        got = model.entry(name).load()
        assert got.stored == "F32" and model.entry(name).stored == "bitstack"
        assert np.array_equal(got.values.view(np.uint32), want.view(np.uint32)), name
        rel = np.sqrt(d.weight_error[1:] / d.weight_error[0])
        assert report["errors"][name]["relative_error"] == [round(float(x), 6) for x in rel]
    assert report["order"] == "weight" and report["order_how"].startswith("default")
    # embeddings, head and norms are copied exactly in their stored dtype
    for e in llama.entries:
        if e.kind is not Kind.TERNARY:
            a, b = e.load(), model.entry(e.name).load()
            assert a.stored == b.stored and np.array_equal(a.raw, b.raw)


def test_table_matches_the_files_tensor_sizes(llama_stack):
    out, report = llama_stack
    stack = open_stack_files(out)
    try:
        ckpt = Checkpoint(out)
        sizes = {n: ckpt.info(n).nbytes for n in ckpt.names()}
        block_names = set()
        for m in stack.matrices:
            per = [sum(sizes[t] for t in stack.naming.block(m.name, i)) for i in range(BLOCKS)]
            assert per == [m.block_bytes] * BLOCKS
            block_names |= {t for i in range(BLOCKS) for t in stack.naming.block(m.name, i)}
        assert stack.extra_bytes == sum(v for n, v in sizes.items() if n not in block_names)
        assert stack.table.max_bytes == sum(sizes.values())
        assert stack.table.min_bytes == stack.extra_bytes + sum(m.block_bytes for m in stack.matrices)
        assert report["min_bytes"] == stack.table.min_bytes and report["max_bytes"] == stack.table.max_bytes
        # compression_config.json is the same table in the reference's form
        cfg = json.loads((out / "compression_config.json").read_text())
        assert [c["memory"] for c in cfg] == [int(b) for b in stack.table.bytes]
        assert cfg[5]["layers"] == {reference_key(n): c for n, c in stack.table.blocks(5).items()}
    finally:
        stack.close()


def test_budget_loading_never_exceeds_and_counts_bytes(llama_stack):
    out, _ = llama_stack
    from bitpack.executor import executor

    table = open_stack(out).stack.table
    budgets = sorted({table.min_bytes, table.min_bytes + 1, int(table.bytes[len(table) // 2]) + 7,
                      table.max_bytes - 1, table.max_bytes, table.max_bytes * 2})
    previous = None
    for i, budget in enumerate(budgets):
        model = open_stack(out, budget=budget)
        sel = model.stack
        assert sel.config_bytes <= budget and sel.budget_bytes == budget and sel.how == "budget"
        counts = np.array(list(sel.blocks.values()))
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1
        if previous is not None:
            assert (counts >= previous).all()
        previous = counts
        if i in (0, 2):  # a forward pass reads exactly the selected blocks and every extra tensor
            executor(model).forward([1, 5, 9])
            assert sel.bytes_loaded == sel.config_bytes
    # every table entry: counts within 1 of each other and monotone
    prev = None
    for i in range(len(table)):
        c = table.counts(i)
        assert c.max() - c.min() <= 1
        assert prev is None or ((c >= prev).all() and c.sum() == prev.sum() + 1)
        prev = c
    with pytest.raises(BitpackError, match="smallest configuration"):
        open_stack(out, budget=table.min_bytes - 1)


def test_explicit_and_uniform_counts(llama_stack):
    out, _ = llama_stack
    model = open_stack(out, blocks=2)
    assert set(model.stack.blocks.values()) == {2} and model.stack.how == "uniform"
    model.entry("blk.0.attn_q.weight").load()
    q = open_stack_files(out).matrix("blk.0.attn_q.weight")
    assert model.stack.bytes_loaded == 2 * q.block_bytes  # only the two blocks were read
    counts = {reference_key(n): 1 for n in model.stack.blocks}
    counts["layer.1.mlp.down_proj"] = 3
    model = open_stack(out, blocks=counts)
    assert model.stack.blocks["blk.1.ffn_down.weight"] == 3 and model.stack.how == "explicit"
    with pytest.raises(BitpackError, match="every matrix"):
        open_stack(out, blocks={"layer.0.mlp.up_proj": 1})
    with pytest.raises(BitpackError, match="1 to 3"):
        open_stack(out, blocks=4)
    with pytest.raises(BitpackError, match="not both"):
        open_stack(out, blocks=1, budget="1GB")


def test_report_for_inspect(llama_stack):
    out, _ = llama_stack
    rep = stack_report(out)
    assert rep["k"] == RANK and rep["niter"] == BLOCKS and rep["scaled"] is False and rep["order"] == "weight"
    assert len(rep["budget_table"]) == 1 + (BLOCKS - 1) * 14
    assert rep["budget_table"][0]["blocks_per_matrix"] == {"min": 1, "max": 1, "mean": 1.0}
    assert rep["budget_table"][-1]["bytes"] == rep["max_bytes"]
    assert set(rep["blocks"].values()) == {BLOCKS} and len(rep["step_bytes"]) == (BLOCKS - 1) * 14
    assert is_stack(out) and not is_stack(FIXTURES / "llama-f16") and not is_stack(out / "nope")


def test_safetensors_gguf_safetensors_copies_blocks_byte_for_byte(work, llama_stack):
    out, _ = llama_stack
    gguf = work / "copy.gguf"
    rep = write_stack(open_stack(out), gguf)
    assert rep["copied"] and rep["order_how"] == "copied from the source stack"
    back = work / "copy-back"
    write_stack(open_stack(gguf), back)
    a, b, c = (open_stack_files(p) for p in (out, gguf, back))
    try:
        assert a.table.order == b.table.order == c.table.order
        ta, tb, tc = block_tensors(a), block_tensors(b), block_tensors(c)
        assert ta.keys() == tb.keys() == tc.keys() and all(ta[k] == tb[k] == tc[k] for k in ta)
        assert list(a.table.bytes) == list(b.table.bytes) == list(c.table.bytes)
        f = GGUFFile(gguf)
        assert f.type_name("blk.0.attn_q.qweight.0") == "I8" and f.type_name("blk.0.attn_q.u.0") == "F16"
        assert f.kv["bitpack.codec"] == "bitstack" and f.architecture == "llama"
        f.close()
        assert Checkpoint(back).metadata == Checkpoint(out).metadata | {
            "bitpack.source": Checkpoint(back).metadata["bitpack.source"]}
    finally:
        for s in (a, b, c):
            s.close()
    model = open_stack(gguf, budget=int(a.table.bytes[7]))
    assert model.container == "gguf" and model.stack.config == 7


def test_output_order_with_calibration_and_shards(tiny_calibrated):
    out, report, model, cal = tiny_calibrated
    assert report["order"] == "output" and report["scaled"] is True
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors.index.json" in files and sum(f.startswith("model-0") for f in files) > 1
    stack = open_stack_files(out)
    try:
        names = [m.name for m in stack.matrices]
        errs, sizes = [], []
        for e in model.ternary:
            st = cal[e.name]
            d = decompose(weight_f32(e.load()), 4, 2, act_scale=avd.act_scale(st.norm_sums, st.n_samples),
                              probe=st.probe)
            errs.append(d.output_error)
            sizes.append(avd.block_nbytes(*e.shape, 2))
            got = stack.store.raw(stack.matrix(e.name).act_scale)
            assert np.array_equal(got, avd.act_scale(st.norm_sums, st.n_samples))
        assert stack.table.order == error_order(errs, sizes, 4)
        ckpt = Checkpoint(out)
        for shard in ckpt.shards:  # the order was patched into every shard's header
            assert json.loads(shard.metadata[KEY_ORDER]) == stack.table.order
        assert names == json.loads(ckpt.metadata["bitpack.bitstack.matrices"])
    finally:
        stack.close()
    full = open_stack(out)
    e = model.entry("blk.1.attn_v.weight")
    st = cal[e.name]
    d = decompose(weight_f32(e.load()), 4, 2, act_scale=avd.act_scale(st.norm_sums, st.n_samples), probe=st.probe)
    want = avd.reconstruct(d.blocks, e.shape, avd.act_scale(st.norm_sums, st.n_samples))
    assert np.array_equal(full.entry(e.name).load().values, want)


@pytest.mark.parametrize("strategy", ["uniform", "weight"])
def test_other_orders_recorded(work, strategy):
    out = work / f"tiny-{strategy}.gguf"
    report = write_stack(tiny_model(5), out, blocks=3, rank=2, order=strategy)
    stack = open_stack_files(out)
    try:
        assert stack.params["order"] == strategy == report["order"] and report["order_how"] == "requested"
        if strategy == "uniform":
            assert stack.table.order == uniform_order(7, 3)
        else:
            check_order(stack.table.order, 7, 3)
    finally:
        stack.close()
    with pytest.raises(BitpackError, match="calibration"):
        write_stack(tiny_model(5), work / "no.gguf", blocks=2, rank=2, order="output")


def test_ppl_order_with_fake_evaluate(work):
    model = tiny_model(7)
    originals = {e.name: weight_f32(e.load()) for e in model.ternary}
    weights = np.linspace(1.0, 2.0, 7)
    calls = []

    def evaluate(m: Model) -> float:  # a deterministic stand-in for perplexity
        calls.append(1)
        return float(sum(w * np.sum((m.entry(n).load().values - originals[n]) ** 2)
                         for w, n in zip(weights, originals)))

    out = work / "tiny-ppl"
    report = write_stack(model, out, blocks=3, rank=2, order="ppl", evaluate=evaluate)
    assert report["ppl"]["passes"] == len(calls) == 2 * 7 + 1
    scores = json.loads((out / "reduced_ppl_average.json").read_text())
    table = np.array([[p["ppl"] for p in level["ppls"]] for level in scores["reduced_ppl"]])
    stack = open_stack_files(out)
    try:
        assert stack.table.order == ppl_order(table) and stack.params["order"] == "ppl"
    finally:
        stack.close()
    with pytest.raises(BitpackError, match="limit of 10"):
        write_stack(model, work / "too-many", blocks=3, rank=2, order="ppl", evaluate=evaluate, max_ppl_passes=10)
    with pytest.raises(BitpackError, match="calibration"):
        write_stack(model, work / "no-eval", blocks=3, rank=2, order="ppl")
    assert not (work / "too-many").exists() and not (work / "no-eval").exists()


def test_perplexity_helper_matches_a_direct_computation():
    from bitpack.executor import executor

    model = tiny_model(9)
    windows = [[1, 4, 9, 16, 25], [3, 1, 4, 1, 5, 9]]
    means = []
    for w in windows:
        logits = executor(model).forward(w).astype(np.float64)[:-1]
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        means.append(-np.mean(logp[np.arange(len(w) - 1), w[1:]]))
    assert perplexity(model, windows) == pytest.approx(float(np.exp(np.mean(means))), rel=1e-12)
    # stacked_model switches block counts without rebuilding
    counts = {e.name: 1 for e in model.ternary}
    cache = {}

    def weights(name, n):
        return cache.setdefault((name, n), np.full(model.entry(name).shape, float(n), np.float32))

    sm = stacked_model(model, weights, counts)
    assert sm.entry("blk.0.attn_q.weight").load().values[0, 0] == 1.0
    counts["blk.0.attn_q.weight"] = 3
    assert sm.entry("blk.0.attn_q.weight").load().values[0, 0] == 3.0


def test_ternary_fixture_stack(work):
    model = bitpack.open_model(FIXTURES / "b158-bf16")
    out = work / "b158.gguf"
    write_stack(model, out, blocks=2, rank=1)
    back = open_stack(out)
    assert back.arch.name == "bitnet-b1.58" and back.hparams.tied
    e = model.entry("blk.0.ffn_sub_norm.weight")
    assert back.entry(e.name).load().stored == "BF16"
    assert np.array_equal(back.entry(e.name).load().raw, e.load().raw)
    t = model.entry("blk.0.attn_q.weight").load()
    d = decompose(t.codes.astype(np.float32) * t.scale, 2, 1)
    assert np.array_equal(back.entry("blk.0.attn_q.weight").load().values, avd.reconstruct(d.blocks, t.codes.shape))


# -- the reference layout ----------------------------------------------------------------------

def write_reference_dir(folder: Path, n_blocks: int = 3, k: int = 2) -> tuple[Model, dict[str, list]]:
    """A hand-made reference-layout directory: config.json, F16 tensors, compression_config.json."""
    model = tiny_model(11)
    folder.mkdir()
    cfg = dict(model.hparams.to_config(), architectures=["LlamaForCausalLM"], model_type="llama",
               torch_dtype="float16")
    (folder / "config.json").write_text(json.dumps(cfg))
    naming = Naming("safetensors")
    blocks, tensors = {}, []
    for e in model.entries:
        if e.kind is Kind.TERNARY:
            d = avd.decompose(weight_f32(e.load()), n_blocks, k, svd="full")
            blocks[e.name] = d.blocks
            for i, b in enumerate(d.blocks):
                q, u, vt = naming.block(e.name, i)
                tensors += [(q, "U8", b.signs), (u, "F16", b.u), (vt, "F16", b.vt)]
        else:
            tensors.append((naming.extra(e.name), "F16", e.load().values.astype(np.float16)))
    with SafetensorsWriter(folder / "model.safetensors", {"format": "pt"}) as w:
        for name, dtype, arr in tensors:
            w.add(name, dtype, arr.shape)
        for name, _, arr in tensors:
            w.write(name, arr)
    names = [e.name for e in model.ternary]
    sizes = {n: avd.block_nbytes(*model.entry(n).shape, k) for n in names}
    extra = sum(a.nbytes for n, _, a in tensors if ".qweight_" not in n and ".u_" not in n and ".vt_" not in n)
    counts = {n: 1 for n in names}
    memory = extra + sum(sizes.values())
    configs = [{"memory": memory, "layers": {reference_key(n): 1 for n in names}}]
    for level in range(1, n_blocks):
        for n in reversed(names):  # an order different from model order
            counts[n] += 1
            memory += sizes[n]
            configs.append({"memory": memory, "layers": {reference_key(m): counts[m] for m in names}})
    (folder / "compression_config.json").write_text(json.dumps(configs))
    return model, blocks


def test_reference_layout(work):
    folder = work / "tiny_niter_3_k_2_no_avd_False_scaled_False"
    model, blocks = write_reference_dir(folder)
    assert is_stack(folder)
    rep = stack_report(folder)
    assert rep["layout"] == "reference" and rep["k"] == 2 and rep["niter"] == 3 and rep["scaled"] is False
    cfg = json.loads((folder / "compression_config.json").read_text())
    budget = cfg[3]["memory"] + 5
    m = open_stack(folder, budget=budget)
    assert m.stack.config == 3 and m.stack.config_bytes == cfg[3]["memory"]
    assert m.stack.blocks == {n: cfg[3]["layers"][reference_key(n)] for n in m.stack.blocks}
    name = "blk.0.ffn_down.weight"
    n = m.stack.blocks[name]
    assert n == 2
    want = avd.reconstruct(blocks[name][:n], model.entry(name).shape)
    assert np.array_equal(m.entry(name).load().values, want)
    m2 = open_stack(folder, blocks={reference_key(x): 1 for x in blocks})
    assert set(m2.stack.blocks.values()) == {1}
    # a reference stack converts to bitpack's own layout, blocks copied
    out = work / "from-reference.gguf"
    write_stack(open_stack(folder), out)
    a, b = open_stack_files(folder), open_stack_files(out)
    try:
        ta, tb = block_tensors(a), block_tensors(b)
        assert ta == tb and a.table.order == b.table.order
    finally:
        a.close()
        b.close()


# -- hostile input --------------------------------------------------------------------------------

def copy_stack(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rewrite_shard(folder: Path, change=lambda n, d, a: (d, a), meta_change=lambda meta: None) -> None:
    """Rewrite model.safetensors with ``change(name, dtype, array) -> (dtype, array) | None``
    and ``meta_change(metadata)`` editing the metadata in place."""
    path = folder / "model.safetensors"
    ckpt = Checkpoint(path)
    meta = dict(ckpt.metadata)
    meta_change(meta)
    items = []
    for name in ckpt.names():
        r = change(name, ckpt.info(name).dtype, np.array(ckpt.raw(name)))
        if r is not None:
            items.append((name, *r))
    ckpt.close()
    with SafetensorsWriter(path, meta, overwrite=True) as w:
        for name, dtype, arr in items:
            w.add(name, dtype, arr.shape)
        for name, _, arr in items:
            w.write(name, arr)


def test_hostile_files(work, llama_stack):
    out, _ = llama_stack
    # truncated
    bad = copy_stack(out, work / "truncated")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(BitpackError):
        open_stack(bad)
    # wrong dtype: a u factor stored as F32
    bad = copy_stack(out, work / "wrong-dtype")
    rewrite_shard(bad, lambda n, d, a: ("F32", a.astype(np.float32)) if n.endswith("q_proj.u_1") else (d, a))
    with pytest.raises(BitpackError, match="q_proj.u_1 is F32"):
        open_stack(bad)
    # wrong shape
    bad = copy_stack(out, work / "wrong-shape")
    rewrite_shard(bad, lambda n, d, a: (d, a[:-1]) if n.endswith("layers.1.mlp.up_proj.qweight_0") else (d, a))
    with pytest.raises(BitpackError, match="up_proj.qweight_0"):
        open_stack(bad)
    # a missing block: fine below, a clear error at or above
    bad = copy_stack(out, work / "missing-block")
    rewrite_shard(bad, lambda n, d, a: None if n.endswith("layers.0.self_attn.v_proj.vt_2") else (d, a))
    with pytest.raises(BitpackError, match=r"needs 3 blocks of blk.0.attn_v.weight .*v_proj.vt_2"):
        open_stack(bad)
    assert set(open_stack(bad, blocks=2).stack.blocks.values()) == {2}
    # an order field the writer never filled in
    bad = copy_stack(out, work / "no-order")
    rewrite_shard(bad, meta_change=lambda meta: meta.update({KEY_ORDER: "?" * len(meta[KEY_ORDER])}))
    with pytest.raises(BitpackError, match="never filled in"):
        open_stack(bad)
    # a level that does not give every matrix one block
    bad = copy_stack(out, work / "bad-order")

    def skew(meta):
        order = json.loads(meta[KEY_ORDER])
        order[0] = order[1]
        meta[KEY_ORDER] = json.dumps(order)

    rewrite_shard(bad, meta_change=skew)
    with pytest.raises(BitpackError, match="level 1"):
        open_stack(bad)


def test_hostile_gguf(work, llama_stack):
    out, _ = llama_stack
    gguf = work / "hostile.gguf"
    write_stack(open_stack(out), gguf)
    data = gguf.read_bytes()
    cut = work / "cut.gguf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BitpackError):
        open_stack(cut)


# -- atomicity --------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["dir", "file.gguf"])
def test_failure_leaves_nothing(work, monkeypatch, target):
    real = avd.decompose
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise BitpackError("planted failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(stack_target.avd, "decompose", failing)
    folder = work / f"atomic-{target.replace('.', '-')}"
    folder.mkdir()
    with pytest.raises(BitpackError, match="planted failure"):
        write_stack(tiny_model(1), folder / target, blocks=2, rank=1)
    assert list(folder.iterdir()) == []


def test_failing_evaluate_leaves_nothing(work):
    folder = work / "atomic-ppl"
    folder.mkdir()

    def evaluate(m):
        raise BitpackError("evaluation failed")

    for target in ("dir", "x.gguf"):
        with pytest.raises(BitpackError, match="evaluation failed"):
            write_stack(tiny_model(1), folder / target, blocks=2, rank=1, order="ppl", evaluate=evaluate)
    assert list(folder.iterdir()) == []


def test_refusals_before_work(work, llama_stack):
    out, _ = llama_stack
    with pytest.raises(BitpackError, match="not empty"):
        write_stack(tiny_model(), out, blocks=2, rank=1)
    existing = work / "exists.gguf"
    existing.write_bytes(b"x")
    with pytest.raises(BitpackError, match="already exists"):
        write_stack(tiny_model(), existing, blocks=2, rank=1)
    with pytest.raises(BitpackError, match="copied block for block"):
        write_stack(open_stack(out), work / "recut", blocks=2)
    with pytest.raises(BitpackError, match="lack"):
        write_stack(tiny_model(), work / "cal", calibration={})


# -- the llama-f16 fixture with real calibration statistics ---------------------------------

def test_llama_f16_calibrated_output_and_ppl_orders(work, llama):
    from bitpack.pipelines.calibrate import collect, windows

    tokens = [int(t) for t in np.random.default_rng(4).integers(0, llama.hparams.vocab_size, 400)]
    wins = windows(tokens, 24, 4, seed=0)
    stats = collect(llama, wins, probe_rows=32)
    out = work / "llama-cal.gguf"
    report = write_stack(llama, out, blocks=3, rank=2, calibration=stats)
    assert report["order"] == "output" and report["scaled"] is True
    e = llama.entry("blk.1.attn_output.weight")  # o_proj: scaled by its own input (scale_o_proj)
    s = avd.act_scale(stats[e.name].norm_sums, stats[e.name].n_samples)
    d = decompose(weight_f32(e.load()), 3, 2, act_scale=s, probe=stats[e.name].probe)
    assert np.array_equal(open_stack(out).entry(e.name).load().values, avd.reconstruct(d.blocks, e.shape, s))
    assert report["errors"][e.name]["relative_output_error"] == [
        round(float(x), 6) for x in np.sqrt(d.output_error[1:] / d.output_error[0])]

    scored = work / "llama-ppl"
    report = write_stack(llama, scored, blocks=3, rank=2, calibration=stats, order="ppl",
                         evaluate=lambda m: perplexity(m, wins[:2]))
    assert report["ppl"]["passes"] == 2 * 14 + 1
    assert report["ppl"]["original_ppl"] == perplexity(open_stack(scored), wins[:2])
    assert np.isfinite(perplexity(open_stack(scored, budget=open_stack(scored).stack.table.min_bytes), wins[:2]))
