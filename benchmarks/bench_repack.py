"""GGUF -> GGUF repack of a group-128 ternary model of the 2B-4T shape, beside the I/O floor.

A synthetic Ternary-Bonsai-like file: architecture `qwen3`, hidden 2560, FFN 6912, 30 layers,
vocabulary 128256, every projection and the token embedding stored as PQ2_0 (group 128, one
random fp16 scale per group), norms F32. bitpack repacks it to `q2_0` (group 64: a byte shuffle
with the scales copied) and to `ptq1_0` (base-3), each in its own process, inputs warm; the I/O
floor is a warm read of the input plus a synced write of the output's size (as in
bench_convert.py).

    python benchmarks/bench_repack.py [--dir /tmp/bitpack-bench] [--layers 30] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_convert import child_env, compile_package, finish, made, read_all, write_zeros
from bitpack.codecs import get_codec
from bitpack.containers.gguf_kv import ValueType as V
from bitpack.containers.gguf_write import GGUFWriter

HIDDEN, FFN, VOCAB, GROUP = 2560, 6912, 128256, 128
PROJECTIONS = {"attn_q": (2560, 2560), "attn_k": (640, 2560), "attn_v": (640, 2560), "attn_output": (2560, 2560),
               "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN)}


def make(path: Path, layers: int) -> None:
    """Write the synthetic PQ2_0 file, tensor by tensor (one tensor in memory at a time)."""
    codec, rng = get_codec("pq2_0"), np.random.default_rng(0)
    tensors = [("token_embd.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        tensors += [(f"blk.{i}.{p}.weight", shape) for p, shape in PROJECTIONS.items()]
    norms = [(f"blk.{i}.{n}.weight", (HIDDEN,)) for i in range(layers) for n in ("attn_norm", "ffn_norm")]
    with GGUFWriter(path) as w:
        w.add_kv("general.architecture", "qwen3", V.STRING)
        w.add_kv("qwen3.block_count", layers, V.UINT32)
        for name, shape in tensors:
            w.add_tensor(name, shape, 142, codec.nbytes(shape))
        for name, shape in norms:
            w.add_tensor(name, shape, 0, 4 * shape[0])
        w.write_header()
        for name, (m, k) in tensors:
            codes = rng.integers(-1, 2, size=(m, k), dtype=np.int8)
            scales = np.exp2(rng.uniform(-9, -1, size=(m, k // GROUP))).astype(np.float16).astype(np.float32)
            w.write_tensor(name, codec.encode(codes, scales))
        for name, shape in norms:
            w.write_tensor(name, np.ones(shape, np.float32))


def convert(src: Path, target: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "bitpack.cli", "convert", str(src), "--to", target, "-o", str(out),
           "--overwrite", "--no-receipt", "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=child_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(wall, 2), "seconds": json.loads(done.stdout)["seconds"],
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "peak_rss_mib": round(after.ru_maxrss / 1024), "bytes": out.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bitpack-bench"))
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    compile_package()
    args.dir.mkdir(parents=True, exist_ok=True)
    src = made(args.dir / f"bonsai-g128-2b4t-L{args.layers}-pq2_0.gguf", make, args.layers)
    results = {"source": str(src), "source_bytes": src.stat().st_size, "load_start": os.getloadavg()[0], "runs": {}}
    read_all([src])  # warm the page cache
    for target in ("q2_0", "ptq1_0"):
        out = args.dir / f"repack-{target}.gguf"
        runs = [convert(src, target, out) for _ in range(args.repeat)]
        read = min(read_all([src]) for _ in range(2))
        write = min(write_zeros(args.dir / "floor.tmp", runs[0]["bytes"]) for _ in range(2))
        best = min(runs, key=lambda r: r["wall_s"])
        results["runs"][target] = {"runs": runs, "floor_s": round(read + write, 2),
                                   "ratio_to_floor": round(best["seconds"] / (read + write), 2)}
        print(f"{target}: {best['seconds']} s in bitpack ({best['wall_s']} s wall, {best['cpu_s']} s CPU), "
              f"peak RSS {best['peak_rss_mib']} MiB, I/O floor {read + write:.2f} s "
              f"(read {read:.2f} + write {write:.2f}), {best['seconds'] / (read + write):.2f}x the floor")
        out.unlink(missing_ok=True)
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
