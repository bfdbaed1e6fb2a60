"""BitStack end to end: convert --to bitstack, inspect, verify --budget, run --budget, receipts.

The stacks are made once per session from the full-precision Llama fixture (llama-f16),
with and without calibration text, and compared against the uncompressed model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import bitpack as cli

from bitpack.errors import BitpackError
from bitpack.models.stack_source import open_stack
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.inspect import inspect
from bitpack.pipelines.open import open_model
from bitpack.pipelines.verify import verify

ROOT = Path(__file__).resolve().parents[1]
LLAMA = ROOT / "fixtures" / "models" / "llama-f16"
TEXT = ROOT / "fixtures" / "calibration.txt"
TOKENS = 24  # positions compared by verify


@pytest.fixture(scope="session")
def stacks(tmp_path_factory):
    """{name: (path, convert report)} for the stacks the tests share."""
    base = tmp_path_factory.mktemp("stacks")
    made = {}
    for name, options in {
        "weight": {},
        "output": {"calibration": TEXT, "n_samples": 8},
        "uniform": {"calibration": TEXT, "n_samples": 8, "order": "uniform"},
    }.items():
        out = base / name
        made[name] = (out, convert(LLAMA, "bitstack", ConvertOptions(output=out, **options)))
    return made


def budgets(stack: Path, n: int = 5) -> list[int]:
    table = inspect(stack)["budget_table"]
    return [table[round(i * (len(table) - 1) / (n - 1))]["bytes"] for i in range(n)]


def test_convert_report_and_receipt(stacks):
    out, report = stacks["output"]
    assert report["format"] == "bitstack" and report["blocks"] == 16 and report["rank"] == 16
    assert report["scaled"] is True and report["order"] == "output"
    assert report["calibration"]["windows"] == 8 and report["calibration"]["seqlen"] == 128
    assert (out / "compression_config.json").is_file() and (out / "config.json").is_file()
    receipt = json.loads(Path(report["receipt"]).read_text())
    assert receipt["target"]["format"] == "bitstack" and receipt["target"]["config"]["k"] == 16
    assert {Path(i["path"]).name for i in receipt["inputs"]} >= {"model.safetensors", "config.json"}
    projections = [t for t in receipt["tensors"] if t["codec"] == "bitstack"]
    assert len(projections) == 14 and all(t["bits_per_weight"] > 16 for t in projections)
    weight_only = stacks["weight"][1]
    assert weight_only["scaled"] is False and weight_only["order"] == "weight"


def test_inspect_shows_blocks_and_a_consistent_budget_table(stacks):
    out, _ = stacks["output"]
    report = inspect(out)
    assert report["k"] == 16 and report["niter"] == 16
    assert set(report["blocks"].values()) == {16}
    table = report["budget_table"]
    assert len(table) == 1 + 15 * 14
    sizes = [row["bytes"] for row in table]
    assert sizes == sorted(sizes) and sizes[0] == report["min_bytes"] and sizes[-1] == report["max_bytes"]
    steps = np.diff(sizes)
    assert list(steps) == report["step_bytes"]
    for row in table:
        assert row["blocks_per_matrix"]["max"] - row["blocks_per_matrix"]["min"] <= 1
    data = 0  # tensor bytes on disk: each file minus its 8-byte length and JSON header
    for p in out.glob("*.safetensors"):
        with open(p, "rb") as fh:
            data += p.stat().st_size - 8 - int.from_bytes(fh.read(8), "little")
    assert report["max_bytes"] == data


@pytest.mark.parametrize("name", ["output", "weight"])
def test_verify_at_budgets_kl_falls_and_loads_within_the_budget(stacks, name):
    out, _ = stacks[name]
    reports = [verify(LLAMA, out, budget=b, n_tokens=TOKENS) for b in budgets(out)]
    for b, r in zip(budgets(out), reports):
        assert r["lossy"] is True and r["passed"] is True and not r["metadata_differences"]
        assert r["budget_bytes"] == b and r["config_bytes"] <= b
        assert r["bytes_loaded"] == r["config_bytes"]  # what the table promised is what was read
    kls = [r["kl"] for r in reports]
    assert kls[-1] < kls[0] / 10, kls
    assert reports[-1]["top1_agreement"] >= reports[0]["top1_agreement"]
    assert reports[-1]["top1_agreement"] >= 0.9


def test_verify_thresholds_gate_the_exit_code(stacks):
    out, _ = stacks["output"]
    small = str(budgets(out)[0])
    passed = cli("verify", str(LLAMA), str(out), "--budget", small, "--n-tokens", "8", "--max-kl", "100", "--json")
    assert passed.returncode == 0, passed.stderr
    report = json.loads(passed.stdout)
    assert report["thresholds"] == {"max_kl": 100.0, "min_top1": None} and report["kl"] > 0
    failed = cli("verify", str(LLAMA), str(out), "--budget", small, "--n-tokens", "8",
                 "--max-kl", str(report["kl"] / 2))
    assert failed.returncode == 1


def test_a_budget_below_the_smallest_configuration_is_refused(stacks):
    out, _ = stacks["output"]
    smallest = inspect(out)["min_bytes"]
    done = cli("verify", str(LLAMA), str(out), "--budget", str(smallest - 1))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(smallest) in done.stderr.replace(",", "") or "MB" in done.stderr
    with pytest.raises(BitpackError, match="not a BitStack stack"):
        open_model(LLAMA, budget="1MB")
    truncated = cli("run", str(_truncated(out, smallest)), "--budget", str(smallest), "--tokens", "1")
    assert truncated.returncode == 2 and "not a BitStack stack" not in truncated.stderr, truncated.stderr


def _truncated(stack: Path, keep: int) -> Path:
    """A copy of a one-file stack directory with its shard cut short."""
    import shutil
    import tempfile

    copy = Path(tempfile.mkdtemp()) / "cut"
    shutil.copytree(stack, copy)
    shard = copy / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return copy


def test_run_at_a_budget_reports_what_it_loaded(stacks):
    out, _ = stacks["output"]
    done = cli("run", str(out), "--budget", "1MB", "--prompt", "The river ran", "--json")
    if done.returncode == 2:  # the fixture stack's smallest configuration exceeds 1 MB
        assert "budget" in done.stderr
        done = cli("run", str(out), "--budget", str(inspect(out)["min_bytes"]), "--prompt", "The river ran", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stack"]["bytes_loaded"] <= report["stack"]["budget_bytes"]
    assert report["stack"]["blocks"] and len(report["positions"]) == 1


def test_orders_differ_only_inside_a_level(stacks):
    """Levels fill one block per matrix in order of importance (spec §4.3): at a whole level
    every order loads the same blocks; half-way through one they choose differently."""
    per_level = 14
    chosen = {}
    for name in ("output", "uniform"):  # each at its own table's configurations (their bytes differ)
        table = inspect(stacks[name][0])["budget_table"]
        chosen[name] = {at: open_stack(stacks[name][0], budget=table[i]["bytes"]).stack.blocks
                        for at, i in (("whole", 3 * per_level), ("half", 3 * per_level + per_level // 2))}
    whole, half = "whole", "half"
    assert chosen["output"][whole] == chosen["uniform"][whole] and set(chosen["output"][whole].values()) == {4}
    assert chosen["output"][half] != chosen["uniform"][half]
    assert sorted(chosen["output"][half].values()) == sorted(chosen["uniform"][half].values()) == [4] * 7 + [5] * 7
    # uniform takes the matrices in model order; output takes them by measured error reduction per byte
    assert [n for n, c in chosen["uniform"][half].items() if c == 5] == list(chosen["uniform"][half])[:7]


def test_stack_copies_between_containers_keep_every_block(stacks, tmp_path):
    out, _ = stacks["output"]
    gguf = tmp_path / "stack.gguf"
    report = convert(out, "bitstack", ConvertOptions(output=gguf))
    assert report["source"]["layout"].startswith("bitstack") or "bitstack" in json.dumps(report["source"])
    back = tmp_path / "again"
    convert(gguf, "bitstack", ConvertOptions(output=back))
    a, b = open_stack(out), open_stack(back)
    for name in ("blk.0.attn_q.weight", "blk.1.ffn_down.weight"):
        assert np.array_equal(a.entry(name).load().raw, b.entry(name).load().raw)
    budget = budgets(out)[2]
    assert verify(out, gguf, budget=budget, n_tokens=8)["passed"]


def test_a_ternary_model_packs_into_a_stack(tmp_path):
    report = convert(ROOT / "fixtures" / "models" / "b158-bf16", "bitstack",
                     ConvertOptions(output=tmp_path / "s.gguf", params={"blocks": 4, "rank": 8}))
    assert report["blocks"] == 4 and report["rank"] == 8
    full = verify(ROOT / "fixtures" / "models" / "b158-bf16", tmp_path / "s.gguf", n_tokens=8)
    assert full["lossy"] and full["top1_agreement"] > 0


def test_bad_bitstack_options_are_one_line_errors(tmp_path):
    done = cli("convert", str(LLAMA), "--to", "bitstack", "-o", str(tmp_path / "s"), "--order", "ppl")
    assert done.returncode == 2 and "--calibration" in done.stderr
    done = cli("convert", str(LLAMA), "--to", "bitstack", "-o", str(tmp_path / "s"), "--blocks", "0")
    assert done.returncode == 2 and "--blocks" in done.stderr
    done = cli("convert", str(LLAMA), "--to", "i2_s", "-o", str(tmp_path / "t.gguf"))
    assert done.returncode == 2 and "--to bitstack" in done.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "t.gguf").exists()


def test_a_uniform_block_count_instead_of_a_budget(stacks):
    out, _ = stacks["output"]
    one = json.loads(cli("verify", str(LLAMA), str(out), "--blocks", "1", "--n-tokens", "8", "--json").stdout)
    assert one["blocks_per_matrix"] == {"min": 1, "max": 1, "mean": 1.0}
    assert one["config_bytes"] == inspect(out)["min_bytes"] and one["budget_bytes"] is None
    done = cli("run", str(out), "--blocks", "16", "--tokens", "1,2,3", "--json")
    assert json.loads(done.stdout)["stack"]["bytes_loaded"] == inspect(out)["max_bytes"]


def test_a_stack_with_a_non_finite_factor_is_refused(stacks, tmp_path):
    """A NaN in a stored f16 factor would turn every logit into NaN; reading it is an error."""
    import shutil

    from bitpack.containers.safetensors_read import SafetensorsFile

    out = tmp_path / "nan"
    shutil.copytree(stacks["output"][0], out)
    shard = next(out.glob("*.safetensors"))
    with SafetensorsFile(shard) as f:
        info = f.info("model.layers.0.self_attn.q_proj.u_0")
    with open(shard, "r+b") as fh:
        fh.seek(info.offset)
        fh.write(b"\xff\x7f")  # f16 NaN
    done = cli("verify", str(LLAMA), str(out), "--n-tokens", "4", "--json")
    assert done.returncode == 2 and "non-finite" in done.stderr and "Traceback" not in done.stderr


def test_stack_receipts_name_the_calibration_text_and_every_file_a_copy_reads(stacks, tmp_path):
    out, report = stacks["output"]
    receipt = json.loads(Path(report["receipt"]).read_text())
    inputs = {Path(i["path"]).name for i in receipt["inputs"]}
    assert "calibration.txt" in inputs
    assert receipt["target"]["config"]["calibration"]["windows"] == 8
    copy = convert(out, "bitstack", ConvertOptions(output=tmp_path / "copy.gguf"))
    copied = {Path(i["path"]).name for i in json.loads(Path(copy["receipt"]).read_text())["inputs"]}
    assert {"tokenizer.json", "compression_config.json", "config.json"} <= copied


def test_convert_verify_thresholds_gate_a_stack(tmp_path):
    done = cli("convert", str(LLAMA), "--to", "bitstack", "--blocks", "1", "--rank", "1", "-o", str(tmp_path / "s"),
               "--verify", "--max-kl", "0.001", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["verify"]["passed"] is False and report["verify"]["kl"] > 0.001
    assert json.loads(Path(report["receipt"]).read_text())["verify"]["passed"] is False
    done = cli("convert", str(LLAMA), "--to", "bitstack", "-o", str(tmp_path / "t"), "--max-kl", "1")
    assert done.returncode == 2 and "--verify" in done.stderr


def rewrite_metadata(src: Path, dst: Path, **changes: str) -> None:
    """Copy a one-file stack directory, replacing __metadata__ entries of its shard."""
    import shutil

    shutil.copytree(src, dst)
    shard = dst / "model.safetensors"
    raw = shard.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    shard.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


@pytest.mark.parametrize("changes", [
    {"bitpack.bitstack.matrices": "5"},
    {"bitpack.bitstack.order": "[[1, 2], [3]]"},
    {"bitpack.bitstack.order": '["a", "b"]'},
], ids=["matrices-not-a-list", "ragged-order", "order-of-strings"])
def test_hostile_stack_metadata_is_one_line(stacks, tmp_path, changes):
    bad = tmp_path / "bad"
    rewrite_metadata(stacks["weight"][0], bad, **changes)
    done = cli("inspect", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_ppl_scoring_keeps_reconstructions_within_a_byte_bound():
    from bitpack.bitstack import avd
    from bitpack.bitstack.order import Reconstructions

    rng = np.random.default_rng(0)
    mats = {f"m{i}": avd.decompose(rng.standard_normal((64, 128)).astype(np.float32), 3, 4) for i in range(6)}
    one = 64 * 128 * 4
    cache = Reconstructions(lambda name: (mats[name].blocks, (64, 128), None), max_bytes=3 * one)
    for n in (1, 2):
        for name in mats:
            w = cache.get(name, n)
            assert np.array_equal(w, avd.reconstruct(mats[name].blocks[:n], (64, 128)))
            assert cache._bytes <= 3 * one
    assert cache.get("m5", 2) is cache.get("m5", 2)  # the most recent stays cached
