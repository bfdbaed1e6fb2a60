"""Ternary Bonsai 8B, the conversion users need: the published legacy group-128 GGUF to stock
llama.cpp's Q2_0, then `verify` of the pair (issue 12, item 7).

A synthetic file of the 8B shape (qwen3.md §1.2: 36 layers, hidden 4096, FFN 12288, 32 / 8 heads
of 128, vocabulary 151,936, untied head), every projection, the embedding and the head in the
legacy Prism layout (id 42, 34-byte blocks of 128: f16 scale, then 2-bit codes), one random fp16
scale per group, norms F32: 8.19 G weights, 2.18 GB, as the real file (qwen3.md §8.2). Its blocks
are written directly (random valid code bytes and scales), not through bitpack's encoder.

Each command runs in its own process (wall time, CPU, peak RSS from the OS); the I/O floor is a
warm read of the input plus a synced write of the output's size, as in bench_convert.py.

    python benchmarks/bench_bonsai.py [--dir /tmp/bitpack-bench] [--layers 36] [--json out.json]
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
from bitpack.containers.gguf_kv import ValueType as V
from bitpack.containers.gguf_write import GGUFWriter

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, VOCAB, GROUP = 4096, 12288, 32, 8, 128, 151936, 128
BLOCK = 2 + GROUP // 4  # bytes per 128 weights
PROJECTIONS = {"attn_q": (HEADS * HEAD_DIM, HIDDEN), "attn_k": (KV_HEADS * HEAD_DIM, HIDDEN),
               "attn_v": (KV_HEADS * HEAD_DIM, HIDDEN), "attn_output": (HIDDEN, HEADS * HEAD_DIM),
               "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN)}
# every byte of four 2-bit codes in {0, 1, 2}: the 81 valid code bytes
CODE_BYTES = np.array([a | b << 2 | c << 4 | d << 6 for a in range(3) for b in range(3) for c in range(3)
                       for d in range(3)], dtype=np.uint8)
ROWS = 2048  # rows generated at a time


def legacy_blocks(rng: np.random.Generator, m: int, k: int):
    """The bytes of an (m, k) tensor in legacy group-128 Q2_0, a slab of rows at a time."""
    for lo in range(0, m, ROWS):
        rows = min(ROWS, m - lo)
        blocks = np.empty((rows * k // GROUP, BLOCK), dtype=np.uint8)
        blocks[:, 2:] = CODE_BYTES[rng.integers(0, 81, size=(blocks.shape[0], BLOCK - 2), dtype=np.uint8)]
        d = np.exp2(rng.uniform(-9, -4, size=blocks.shape[0])).astype("<f2")
        blocks[:, :2] = d.view(np.uint8).reshape(-1, 2)
        yield blocks.reshape(-1)


def make(path: Path, layers: int) -> None:
    rng = np.random.default_rng(0)
    ternary = [("token_embd.weight", (VOCAB, HIDDEN)), ("output.weight", (VOCAB, HIDDEN))]
    norms = [("output_norm.weight", (HIDDEN,))]
    for i in range(layers):
        ternary += [(f"blk.{i}.{p}.weight", shape) for p, shape in PROJECTIONS.items()]
        norms += [(f"blk.{i}.attn_norm.weight", (HIDDEN,)), (f"blk.{i}.ffn_norm.weight", (HIDDEN,)),
                  (f"blk.{i}.attn_q_norm.weight", (HEAD_DIM,)), (f"blk.{i}.attn_k_norm.weight", (HEAD_DIM,))]
    kv = [("general.architecture", "qwen3", V.STRING), ("qwen3.block_count", layers, V.UINT32),
          ("qwen3.context_length", 65536, V.UINT32), ("qwen3.embedding_length", HIDDEN, V.UINT32),
          ("qwen3.feed_forward_length", FFN, V.UINT32), ("qwen3.attention.head_count", HEADS, V.UINT32),
          ("qwen3.attention.head_count_kv", KV_HEADS, V.UINT32), ("qwen3.attention.key_length", HEAD_DIM, V.UINT32),
          ("qwen3.attention.value_length", HEAD_DIM, V.UINT32), ("qwen3.rope.freq_base", 1e6, V.FLOAT32),
          ("qwen3.attention.layer_norm_rms_epsilon", 1e-6, V.FLOAT32), ("qwen3.vocab_size", VOCAB, V.UINT32),
          ("qwen3.rope.scaling.type", "yarn", V.STRING), ("qwen3.rope.scaling.factor", 4.0, V.FLOAT32),
          ("qwen3.rope.scaling.original_context_length", 16384, V.UINT32), ("general.file_type", 41, V.UINT32)]
    with GGUFWriter(path) as w:
        for key, value, vtype in kv:
            w.add_kv(key, value, vtype)
        for name, (m, k) in ternary:
            w.add_tensor(name, (m, k), 42, m * k // GROUP * BLOCK)
        for name, shape in norms:
            w.add_tensor(name, shape, 0, 4 * shape[0])
        w.write_header()
        for name, (m, k) in ternary:
            w.write_tensor(name, np.concatenate(list(legacy_blocks(rng, m, k))))
        for name, shape in norms:
            w.write_tensor(name, (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32))


# Runs one command and prints its own peak RSS: RUSAGE_CHILDREN of this process would report the
# largest of every command run so far, not this one's.
WRAPPER = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "sys.stderr.write(done.stderr); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(done.stdout, end=''); "
           "sys.exit(done.returncode)")


def timed(cmd: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True,
                          env=child_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    rss_kib, stdout = done.stdout.split("\n", 1)
    return {"wall_s": round(wall, 2), "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime
                                                       - before.ru_stime, 2),
            "peak_rss_mib": round(int(rss_kib) / 1024), "report": json.loads(stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bitpack-bench"))
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    compile_package()
    args.dir.mkdir(parents=True, exist_ok=True)
    src = made(args.dir / f"bonsai-8b-L{args.layers}-q2_0-legacy.gguf", make, args.layers)
    out = args.dir / "bonsai-8b-q2_0.gguf"
    bitpack = [sys.executable, "-m", "bitpack"]
    results = {"source": str(src), "source_bytes": src.stat().st_size, "load_start": os.getloadavg()[0]}
    read_all([src])  # warm
    repack = timed([*bitpack, "convert", str(src), "--to", "q2_0", "-o", str(out), "--overwrite", "--no-receipt",
                    "--json"])
    read = min(read_all([src]) for _ in range(2))
    write = min(write_zeros(args.dir / "floor.tmp", out.stat().st_size) for _ in range(2))
    seconds = repack["report"]["seconds"]
    results["repack"] = {k: repack[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")} | {
        "seconds": seconds, "output_bytes": out.stat().st_size, "floor_s": round(read + write, 2),
        "ratio_to_floor": round(seconds / (read + write), 2)}
    print(f"legacy -> q2_0: {seconds} s in bitpack ({repack['wall_s']} s wall, {repack['cpu_s']} s CPU), peak RSS "
          f"{repack['peak_rss_mib']} MiB; I/O floor {read + write:.2f} s (read {read:.2f} + write {write:.2f}): "
          f"{seconds / (read + write):.2f}x")
    check = timed([*bitpack, "verify", str(src), str(out), "--json"])
    report = check["report"]
    results["verify"] = {k: check[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")} | {
        k: report[k] for k in ("identical", "max_abs_diff", "tokens", "seconds")}
    print(f"verify (16 tokens): {check['wall_s']} s wall, {check['cpu_s']} s CPU, peak RSS "
          f"{check['peak_rss_mib']} MiB, identical={report['identical']} (max diff {report['max_abs_diff']})")
    return finish(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
