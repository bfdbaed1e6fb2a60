"""Write a random-weight master checkpoint with the real shapes of a published BitNet b1.58 model.

Run from the repository root:

    python benchmarks/make_synthetic.py                     # 2B-4T-bf16 shape, 30 layers, ~4.8 GB
    python benchmarks/make_synthetic.py --shape large       # 1bitLLM bitnet_b1_58-large, F32, ~2.9 GB
    python benchmarks/make_synthetic.py --layers 2 --dir /tmp/x   # a quick, small variant

Shapes (checkpoints.md §6 and §9):

* ``2b4t``: microsoft/bitnet-b1.58-2B-4T-bf16. BitNetForCausalLM / model_type bitnet, hidden 2560,
  intermediate 6912, 30 layers, 20 heads / 5 kv heads, head_dim 128, vocab 128256, relu2, tied
  embeddings (no lm_head), rope_theta 500000, quantization_config autobitlinear / online. One
  model.safetensors, BF16 everywhere, sub-norms ``attn_sub_norm`` / ``ffn_sub_norm``. With 30
  layers it holds 2,412,820,480 parameters in 4,825,679,400 bytes, exactly like the real file.
* ``large``: 1bitLLM/bitnet_b1_58-large. BitnetForCausalLM / model_type llama, hidden 1536,
  intermediate 4096, 24 layers, 16 heads / 16 kv heads, vocab 32002, silu, tied, no
  quantization_config, sub-norms ``inner_attn_ln`` / ``ffn_layernorm``. F32 masters (config says
  float16, like the real one), one model.safetensors of ~2.9 GB (2.7 GiB).

Values: projections and the embedding are N(0, 0.02) (``default_rng([seed, i]).standard_normal``
in float32, one stream per tensor, so a tensor does not depend on the others); norms are
1 + N(0, 0.02). BF16 takes the high 16 bits of the float32 (truncation). Tensors are generated
and written in chunks of --chunk-mib, so the generator needs little memory whatever the shape.
The file is written as ``.model.safetensors.part`` and renamed at the end.

The tokenizer files come from the tiny fixtures (a ~300-token tokenizer.json for 2b4t, a
320-token tokenizer.model for large); config.json keeps their bos/eos ids. bitpack pads the GGUF
vocabulary up to vocab_size, so the tokenizer does not match the embedding's row count on purpose.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "models"
DEFAULT_DIR = Path("/tmp/bitpack-bench")
STD = np.float32(0.02)

SHAPES = {
    "2b4t": {
        "name": "bitnet-b1.58-2B-4T-bf16-synthetic",
        "dtype": "BF16",
        "fixture": "b158-bf16",
        "tokenizer_files": ["tokenizer.json", "tokenizer_config.json", "generation_config.json"],
        "attn_sub_norm": "self_attn.attn_sub_norm",
        "ffn_sub_norm": "mlp.ffn_sub_norm",
        "config": {
            "architectures": ["BitNetForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "hidden_act": "relu2",
            "hidden_size": 2560,
            "head_dim": 128,
            "initializer_range": 0.02,
            "intermediate_size": 6912,
            "max_position_embeddings": 4096,
            "model_type": "bitnet",
            "num_attention_heads": 20,
            "num_hidden_layers": 30,
            "num_key_value_heads": 5,
            "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                    "quantization_mode": "online"},
            "rms_norm_eps": 1e-05,
            "rope_theta": 500000.0,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.52.4",
            "use_cache": True,
            "vocab_size": 128256,
        },
    },
    "large": {
        "name": "bitnet_b1_58-large-synthetic",
        "dtype": "F32",
        "fixture": "bitnet-f32-sharded",
        "tokenizer_files": ["tokenizer.model", "tokenizer_config.json", "generation_config.json"],
        "attn_sub_norm": "self_attn.inner_attn_ln",
        "ffn_sub_norm": "mlp.ffn_layernorm",
        "config": {
            "architectures": ["BitnetForCausalLM"],
            "attention_bias": False,
            "attention_dropout": 0.0,
            "hidden_act": "silu",
            "hidden_size": 1536,
            "initializer_range": 0.02,
            "input_bits": 8,
            "intermediate_size": 4096,
            "max_position_embeddings": 2048,
            "model_type": "llama",
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "num_key_value_heads": 16,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
            "torch_dtype": "float16",
            "transformers_version": "4.39.3",
            "use_cache": True,
            "vocab_size": 32002,
            "weight_bits": 1,
        },
    },
}
ITEMSIZE = {"BF16": 2, "F32": 4}


def model_dir(base: Path, shape: str, layers: int | None = None) -> Path:
    """Where the checkpoint of ``shape`` with ``layers`` layers lives under ``base``."""
    spec = SHAPES[shape]
    full = spec["config"]["num_hidden_layers"]
    layers = full if layers is None else layers
    return base / (spec["name"] + ("" if layers == full else f"-L{layers}"))


def tensor_list(shape: str, layers: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) for every tensor, sorted by name as the HF writer stores them."""
    spec, cfg = SHAPES[shape], SHAPES[shape]["config"]
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (v, h), "weight"), ("model.norm.weight", (h,), "norm")]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (h,), "norm"),
            (p + "post_attention_layernorm.weight", (h,), "norm"),
            (p + spec["attn_sub_norm"] + ".weight", (q,), "norm"),
            (p + spec["ffn_sub_norm"] + ".weight", (f,), "norm"),
            (p + "self_attn.q_proj.weight", (q, h), "weight"),
            (p + "self_attn.k_proj.weight", (kv, h), "weight"),
            (p + "self_attn.v_proj.weight", (kv, h), "weight"),
            (p + "self_attn.o_proj.weight", (h, q), "weight"),
            (p + "mlp.gate_proj.weight", (f, h), "weight"),
            (p + "mlp.up_proj.weight", (f, h), "weight"),
            (p + "mlp.down_proj.weight", (h, f), "weight"),
        ]
    return sorted(out)


def header_bytes(tensors: list[tuple[str, tuple[int, ...], str]], dtype: str) -> bytes:
    """The 8-byte length and JSON header, space-padded to a multiple of 8 (like the reference)."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shp, _ in tensors:
        n = math.prod(shp) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shp), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def write_tensor(fh, n: int, kind: str, dtype: str, rng: np.random.Generator, chunk: int) -> None:
    """Generate ``n`` values in chunks and write them in ``dtype``."""
    buf = np.empty(min(n, chunk), np.float32)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        part = buf[:m]
        rng.standard_normal(out=part, dtype=np.float32)
        part *= STD
        if kind == "norm":
            part += np.float32(1.0)
        if dtype == "BF16":
            fh.write((part.view(np.uint32) >> 16).astype("<u2").data)  # high half = bf16 bits
        else:
            fh.write(part.astype("<f4", copy=False).data)
        done += m


def make(shape: str, base: Path, layers: int | None = None, seed: int = 0, chunk_mib: int = 64,
         overwrite: bool = False, quiet: bool = False) -> dict:
    """Write the checkpoint; returns {"dir", "bytes", "params", "tensors", "seconds"}."""
    spec = SHAPES[shape]
    layers = spec["config"]["num_hidden_layers"] if layers is None else layers
    out = model_dir(base, shape, layers)
    target = out / "model.safetensors"
    if target.exists() and not overwrite:
        raise SystemExit(f"{target} exists (pass --overwrite to regenerate)")
    tensors = tensor_list(shape, layers)
    dtype = spec["dtype"]
    params = sum(math.prod(s) for _, s, _ in tensors)
    head = header_bytes(tensors, dtype)
    total = len(head) + params * ITEMSIZE[dtype]
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free + (target.stat().st_size if target.exists() else 0)
    if free < total + (64 << 20):
        raise SystemExit(f"{out}: {free / 1e9:.2f} GB free, need {total / 1e9:.2f} GB")

    fixture = FIXTURES / spec["fixture"]
    cfg = dict(spec["config"], num_hidden_layers=layers)
    fixture_cfg = json.loads((fixture / "config.json").read_text())
    cfg["bos_token_id"], cfg["eos_token_id"] = fixture_cfg["bos_token_id"], fixture_cfg["eos_token_id"]
    (out / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    for name in spec["tokenizer_files"]:
        if (fixture / name).exists():
            shutil.copyfile(fixture / name, out / name)

    if not quiet:
        print(f"writing {target}: {len(tensors)} tensors, {params:,} parameters, {dtype}, "
              f"{total:,} bytes ({total / 1e9:.2f} GB)", flush=True)
    chunk = (chunk_mib << 20) // 4  # float32 working buffer
    tmp = out / ".model.safetensors.part"
    t0 = time.perf_counter()
    try:
        with tmp.open("wb") as fh:
            fh.write(head)
            for i, (name, shp, kind) in enumerate(tensors):
                write_tensor(fh, math.prod(shp), kind, dtype, np.random.default_rng([seed, i]), chunk)
                if not quiet and (i % 50 == 0 or i == len(tensors) - 1):
                    print(f"  [{i + 1}/{len(tensors)}] {name} {list(shp)}  "
                          f"{fh.tell() / 1e9:.2f} GB  {time.perf_counter() - t0:.1f} s", flush=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    size = target.stat().st_size
    assert size == total, (size, total)
    return {"dir": str(out), "bytes": size, "params": params, "tensors": len(tensors), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"parent folder (default {DEFAULT_DIR})")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="2b4t", help="model shape (default 2b4t)")
    ap.add_argument("--layers", type=int, help="decoder layers (default: the real count, 30 / 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-mib", type=int, default=64, help="generation buffer, MiB of float32")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    args = ap.parse_args()
    if args.layers is not None and args.layers < 1:
        ap.error("--layers must be >= 1")
    r = make(args.shape, args.dir, args.layers, args.seed, args.chunk_mib, args.overwrite)
    total = sum(p.stat().st_size for p in Path(r["dir"]).iterdir() if p.is_file())
    print(f"done: {r['dir']}\n  model.safetensors {r['bytes']:,} bytes ({r['bytes'] / 1e9:.3f} GB, "
          f"{r['bytes'] / 2**30:.3f} GiB), {r['tensors']} tensors, {r['params']:,} parameters\n"
          f"  folder {total:,} bytes; written in {r['seconds']:.1f} s "
          f"({r['bytes'] / r['seconds'] / 1e6:.0f} MB/s)")


if __name__ == "__main__":
    main()
