"""Structure-aware fuzzing of what the models layer reads: HF directories (config.json and the
tokenizer files) and GGUF hyper-parameter / tokenizer metadata.

A case is built from a fixture under fixtures/models/ by a seeded mutator: a config.json field
or a tokenizer JSON node replaced by a hostile value (wrong type, NaN, +-Infinity, 1e999, 0,
huge, deeply nested), a key deleted, a file truncated or bit-flipped; or a GGUF rewritten by
gguf-py with one metadata key changed. The case is then opened the way ``bitpack`` opens a
source. Any exception other than BitpackError is a crash; so is a case that takes longer than
``SLOW`` seconds.

``tests/test_fuzz_models.py`` runs a few hundred cases with fixed seeds inside the suite;
``fuzz/run.py`` runs as many as asked and saves every crash under fixtures/fuzz/.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitpack.errors import BitpackError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
HF_BASES = ("b158-bf16", "b158-packed", "bitnet-f32-sharded", "llama-packed", "llama-f16")
SLOW = 5.0

DEEP = "[" * 5000 + "]" * 5000
HOSTILE = [None, "", "abc", "1e999", [], {}, [1, 2], {"a": 1}, True, False, 0, -1, 1, 2, 3, 7, 64, 2**31,
           2**32, 2**63, 2**64, 10**6, -(2**31), 0.5, 1.5, 3.4e38, -0.0, float("nan"), float("inf"),
           float("-inf"), "NaN", "x" * 1000, [[[[[]]]]]]
RAW_HOSTILE = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", DEEP, '"\\ud800"', "1" * 400]
CONFIG_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings", "rms_norm_eps",
               "rope_theta", "tie_word_embeddings", "hidden_act", "bos_token_id", "eos_token_id",
               "quantization_config", "architectures", "model_type", "rope_scaling", "rope_parameters",
               "attention_bias", "mlp_bias", "torch_dtype", "is_bitnet_config")
TOKENIZER_JSONS = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "added_tokens.json",
                   "special_tokens_map.json")


@dataclass
class Result:
    kind: str  # "ok", "refused" (a BitpackError) or "crash"
    detail: str = ""
    seconds: float = 0.0


def run_case(open_fn, path: Path) -> Result:
    t0 = time.perf_counter()
    try:
        open_fn(path)
        kind, detail = "ok", ""
    except BitpackError as err:
        kind, detail = "refused", str(err)
        if "\n" in detail.strip():
            kind, detail = "crash", "multi-line error: " + detail
    except Exception as err:  # noqa: BLE001 -- what the harness is looking for
        kind = "crash"
        detail = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-4)}"
    seconds = time.perf_counter() - t0
    if seconds > SLOW and kind != "crash":
        kind, detail = "crash", f"slow: {seconds:.1f} s ({detail[:100]})"
    return Result(kind, detail, seconds)


# -- JSON mutation --------------------------------------------------------------------------
def _paths(node: Any, prefix: tuple = (), out: list | None = None, limit: int = 400) -> list[tuple]:
    """Paths into a JSON tree (breadth-limited so huge vocabularies stay cheap)."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    out.append(prefix)
    if isinstance(node, dict):
        keys = list(node)
        for k in keys[:20] + keys[-5:]:
            _paths(node[k], prefix + (k,), out, limit)
    elif isinstance(node, list):
        for i in list(range(min(len(node), 10))) + list(range(max(10, len(node) - 3), len(node))):
            _paths(node[i], prefix + (i,), out, limit)
    return out


_RAW_MARK = "__bitpack_fuzz_raw__"


def mutate_json(data: Any, rng: random.Random, keys: tuple[str, ...] = ()) -> str:
    """``data`` with one to three nodes replaced or deleted, as JSON text (raw tokens such as
    1e999 or deep nesting spliced in as text)."""
    raws: list[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        paths = [p for p in _paths(data) if p]
        if keys and isinstance(data, dict) and rng.random() < 0.6:
            path = (rng.choice(keys),)
        elif paths:
            path = rng.choice(paths)
        else:
            break
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        roll = rng.random()
        if roll < 0.15 and isinstance(parent, dict):
            parent.pop(last, None)
            continue
        if roll < 0.35:
            raws.append(rng.choice(RAW_HOSTILE))
            value: Any = f"{_RAW_MARK}{len(raws) - 1}"
        else:
            value = copy.deepcopy(rng.choice(HOSTILE))  # shared lists and dicts would nest into themselves
        if isinstance(parent, dict) or (isinstance(parent, list) and isinstance(last, int) and last < len(parent)):
            parent[last] = value
    text = json.dumps(data, allow_nan=True)
    for i, raw in enumerate(raws):
        text = text.replace(f'"{_RAW_MARK}{i}"', raw)
    if rng.random() < 0.05:  # a truncated file
        text = text[: rng.randrange(len(text) + 1)]
    return text


def hf_case(base: str, workdir: Path, rng: random.Random) -> Path:
    """A copy of fixture ``base`` (weights linked, not copied) with damaged JSON or tokenizer files."""
    src = MODELS / base
    dst = workdir / base
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix in (".safetensors",):
            (dst / f.name).symlink_to(f)
        else:
            shutil.copyfile(f, dst / f.name)
    target = rng.random()
    if target < 0.55:
        config = json.loads((src / "config.json").read_text())
        (dst / "config.json").write_text(mutate_json(config, rng, CONFIG_KEYS))
    elif target < 0.85:
        name = rng.choice([n for n in TOKENIZER_JSONS if (src / n).is_file()] + ["vocab.json", "added_tokens.json"])
        if (src / name).is_file():
            data = json.loads((src / name).read_text())
        else:  # a file the fixture lacks: made from tokenizer.json's vocabulary, or empty
            tok = src / "tokenizer.json"
            data = json.loads(tok.read_text())["model"].get("vocab", {}) if tok.is_file() else {}
            data = dict(list(data.items())[:50]) if name == "added_tokens.json" else data
        (dst / name).write_text(mutate_json(data, rng))
    else:
        name = rng.choice([f.name for f in src.iterdir() if f.name.startswith("tokenizer")])
        blob = bytearray((src / name).read_bytes())
        if rng.random() < 0.5 and blob:
            blob = blob[: rng.randrange(len(blob))]
        for _ in range(rng.randint(1, 8)):
            if blob:
                blob[rng.randrange(len(blob))] = rng.randrange(256)
        (dst / name).write_bytes(bytes(blob))
    return dst


# -- GGUF mutation --------------------------------------------------------------------------
def base_gguf(workdir: Path) -> Path:
    """A small GGUF converted by bitpack from the 1bitLLM fixture (bitnet arch, mainline TQ2_0)."""
    from bitpack.pipelines.convert import ConvertOptions, convert

    out = workdir / "base.gguf"
    if not out.exists():
        convert(MODELS / "bitnet-f32-sharded", "tq2_0", ConvertOptions(output=out))
    return out


def read_gguf(path: Path) -> tuple[list[tuple[str, Any, Any, Any]], list[tuple[str, np.ndarray, Any, Any]]]:
    """(key, value, type, sub type) and (name, data, raw shape, ggml type) with gguf-py."""
    import gguf

    reader = gguf.GGUFReader(path)
    kv = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        kv.append((field.name, field.contents(), vtype, sub))
    tensors = [(t.name, np.array(t.data), list(reversed([int(n) for n in t.shape])), t.tensor_type)
               for t in reader.tensors]
    return kv, tensors


GGUF_KEYS = ("context_length", "embedding_length", "block_count", "feed_forward_length",
             "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
             "rope.freq_base", "rope.dimension_count", "vocab_size", "attention.key_length")
GGUF_GLOBAL = ("general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
               "tokenizer.ggml.scores", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
               "tokenizer.ggml.eos_token_id", "tokenizer.ggml.model", "bitpack.codec_params")


def _hostile_gguf_value(rng: random.Random):
    import gguf

    T = gguf.GGUFValueType
    return rng.choice([
        (rng.choice(["abc", "", "7", "NaN", "[[[[1]]]]", "{}", "[" * 3000, '{"blk.0.attn_q.weight": 5}',
                     '{"x": {"BM": "a"}}', "llama", "bitnet", "foobar"]), T.STRING, None),
        (rng.choice([0, 1, 2, 3, 64, 2**31, 2**32 - 1]), T.UINT32, None),
        (rng.choice([0, -1, -(2**31), 2**31 - 1]), T.INT32, None),
        (rng.choice([0, 2**63, 2**64 - 1]), T.UINT64, None),
        (rng.choice([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 3.4e38, 1e-30]), T.FLOAT32, None),
        (rng.choice([True, False]), T.BOOL, None),
        (rng.choice([[7], [1, 2, 3], list(range(300))]), T.ARRAY, T.INT32),
        (rng.choice([["a"], ["a", "b"], ["x"] * 400]), T.ARRAY, T.STRING),
        ([float("nan")] * 3, T.ARRAY, T.FLOAT32),
    ])


def gguf_case(base: tuple, workdir: Path, rng: random.Random) -> Path:
    """``base`` (read_gguf's result) rewritten with one to three metadata keys changed or removed."""
    import gguf

    kv, tensors = base
    kv = list(kv)
    arch = next(v for k, v, _, _ in kv if k == "general.architecture")
    for _ in range(rng.choice((1, 1, 2, 3))):
        key = rng.choice([f"{arch}.{k}" for k in GGUF_KEYS] + list(GGUF_GLOBAL))
        kv = [e for e in kv if e[0] != key]
        if rng.random() < 0.8:
            value, vtype, sub = _hostile_gguf_value(rng)
            kv.append((key, value, vtype, sub))
    out = workdir / f"case-{rng.randrange(1 << 30)}.gguf"
    writer = gguf.GGUFWriter(out, "unused")
    writer.kv_data[0].clear()
    for key, value, vtype, sub in kv:
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for name, data, shape, qtype in tensors:
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


# -- the campaign ---------------------------------------------------------------------------
def campaign(target: str, cases: int, seed: int, save: Path | None = None, report=None) -> dict[str, Any]:
    """Run ``cases`` cases of ``target`` ("hf" or "gguf"); crashes are saved under ``save``."""
    from bitpack.pipelines.open import open_model

    counts = {"ok": 0, "refused": 0, "crash": 0}
    crashes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"bitpack-fuzz-{target}-") as tmp:
        workdir = Path(tmp)
        base = read_gguf(base_gguf(workdir)) if target == "gguf" else None
        for i in range(cases):
            rng = random.Random(f"{seed}-{target}-{i}")
            if target == "hf":
                path = hf_case(rng.choice(HF_BASES), workdir / "case", rng)
            else:
                path = gguf_case(base, workdir, rng)
            result = run_case(lambda p: open_model(p, progress=False), path)
            counts[result.kind] += 1
            if result.kind == "crash":
                crashes.append({"case": i, "detail": result.detail})
                if save is not None:
                    dest = save / f"{target}-{seed}-{i}"
                    if path.is_dir():  # only the damaged files, over the fixture BASE names
                        dest.mkdir(parents=True, exist_ok=True)
                        (dest / "BASE").write_text(path.name + "\n")
                        for f in path.iterdir():
                            orig = MODELS / path.name / f.name
                            if not f.is_symlink() and not (orig.is_file() and orig.read_bytes() == f.read_bytes()):
                                shutil.copyfile(f, dest / f.name)
                    else:
                        dest.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, dest / "model.gguf")
                    (dest / "CRASH.txt").write_text(result.detail.splitlines()[0] + "\n")
            if target == "gguf":
                path.unlink()
            if report and (i + 1) % 1000 == 0:
                report(f"{target}: {i + 1} cases, {counts}")
    return {"target": target, "seed": seed, "cases": cases, **counts, "crashes": crashes}
