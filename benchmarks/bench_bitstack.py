"""BitStack decomposition: time, and error against bits per weight next to round-to-nearest.

Run from the repository root:

    python benchmarks/bench_bitstack.py                  # 2560x6912 and 4096x14336, full SVD too: minutes
    python benchmarks/bench_bitstack.py --no-full        # randomized only: about a minute
    python benchmarks/bench_bitstack.py --quick          # 512x1024: seconds
    python benchmarks/bench_bitstack.py --threads 1      # OpenBLAS threads (set before NumPy loads)

For each shape (out x in) a synthetic weight is drawn as a realistic stand-in: Laplace entries
times log-normal(0, 0.4) row and column scales (default_rng(0)), the matrix whose AVD errors
match spec/bitstack.md §8 at 512x1024.

* Decomposition: ``bitpack.bitstack.avd.decompose`` with 16 blocks of rank 16, randomized SVD
  (the default) and, for the first shape, the reference's full SVD. Wall and CPU time of one
  call (a decomposition is seconds, so no repeats); the machine is shared with other users, so
  the load average before and after is recorded with every timing.
* Reconstruction of all 16 blocks: ``reconstruct`` in f32 and in the reference's f16 numerics.
* Error: relative Frobenius error ‖W − Ŵ‖/‖W‖ at every block count, from the stored f16 factors
  (``reconstruct``), against bits per weight b·(1 + 16·k·(M+K)/(M·K)).
* Baseline: round-to-nearest asymmetric min/max quantization to 2, 3 and 4 bits in groups of
  128 along the input dimension, with an fp16 scale and an fp16 zero (the group minimum) per
  group: b + 32/128 bits per weight.
* Ternary input (--ternary, on by default for the first shape): the same weight ternarized with
  absmean (t = clip(round(W / mean|W|)), W' = mean|W|·t): how fast blocks converge when the
  source is a BitNet-style s·t matrix (spec/bitstack.md §8 "Ternary models").

--json (default benchmarks/results/bitstack.json) gets the machine, the date and every figure.
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":  # the BLAS reads its thread count once, when NumPy loads
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = sys.argv[i + 1]

import datetime
import json
import platform
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from bitpack.bitstack.avd import block_nbytes, decompose, reconstruct

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bitstack.json"
BLOCKS, RANK, GROUP, SIGMA = 16, 16, 128, 0.4


def machine() -> dict:
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["lscpu_model"] = fields.get("Model name", "?").strip()
        info["lscpu_cpus"] = fields.get("CPU(s)", "?").strip()
    except (OSError, subprocess.CalledProcessError):
        info["lscpu_model"] = "?"
    u = platform.uname()
    return info | {
        "nproc": len(os.sched_getaffinity(0)), "uname": f"{u.system} {u.release} {u.machine}",
        "python": platform.python_version(), "numpy": np.__version__, "bitpack": version("bitpack"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
    }


def synthetic(m: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.laplace(size=(m, n)).astype(np.float32)
    w *= np.exp(SIGMA * rng.standard_normal((m, 1))).astype(np.float32)
    w *= np.exp(SIGMA * rng.standard_normal((1, n))).astype(np.float32)
    return w


def ternarized(w: np.ndarray) -> np.ndarray:
    s = np.float32(np.abs(w).mean(dtype=np.float64))
    return np.clip(np.rint(w / s), -1, 1).astype(np.float32) * s


def rtn_error(w: np.ndarray, bits: int, group: int = GROUP) -> float:
    """‖W − RTN(W)‖/‖W‖: asymmetric min/max, fp16 scale and zero per group along the input."""
    m, n = w.shape
    g = w.reshape(m, n // group, group)
    lo, hi = g.min(axis=2, keepdims=True), g.max(axis=2, keepdims=True)
    scale = ((hi - lo) / np.float32(2**bits - 1)).astype(np.float16).astype(np.float32)
    zero = lo.astype(np.float16).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint((g - zero) / safe), 0, 2**bits - 1)
    err = np.linalg.norm((q * scale + zero - g).reshape(-1).astype(np.float64))
    return float(err / np.linalg.norm(w.reshape(-1).astype(np.float64)))


def timed(fn):
    load = os.getloadavg()[0]
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                 "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def errors_by_block(w: np.ndarray, blocks) -> list[float]:
    """Relative error from the stored f16 factors after 1..n blocks. reconstruct() adds the
    blocks in order into an f32 sum, so adding one block at a time gives the same bits."""
    norm = np.linalg.norm(w.reshape(-1).astype(np.float64))
    w_hat, out = np.zeros_like(w), []
    for b in blocks:
        w_hat += reconstruct([b], w.shape)
        out.append(float(np.linalg.norm((w - w_hat).reshape(-1).astype(np.float64)) / norm))
    return out


def bench_shape(m: int, n: int, full: bool, ternary: bool) -> dict:
    w = synthetic(m, n)
    per_block_bits = 8 * block_nbytes(m, n, RANK) / (m * n)
    row: dict = {"shape": [m, n], "bits_per_block": per_block_bits}
    dec, row["randomized"] = timed(lambda: decompose(w, BLOCKS, RANK, svd="randomized"))
    blocks = dec.blocks
    row["randomized"]["relative_error"] = errors_by_block(w, blocks)
    row["randomized"]["relative_error_f32_factors"] = [float(x) for x in dec.relative_error[1:]]
    _, row["reconstruct_f32"] = timed(lambda: reconstruct(blocks, (m, n)))
    _, row["reconstruct_reference_f16"] = timed(lambda: reconstruct(blocks, (m, n), mode="reference-f16"))
    if full:
        ref, row["full"] = timed(lambda: decompose(w, BLOCKS, RANK, svd="full"))
        row["full"]["relative_error"] = errors_by_block(w, ref.blocks)
        rel_r, rel_f = np.array(row["randomized"]["relative_error"]), np.array(row["full"]["relative_error"])
        row["randomized_excess_over_full"] = [float(x) for x in rel_r / rel_f - 1]
    row["rtn"] = [{"bits": b, "bits_per_weight": b + 32 / GROUP, "relative_error": rtn_error(w, b)} for b in (2, 3, 4)]
    if ternary:
        wt = ternarized(w)
        tdec, row["ternary"] = timed(lambda: decompose(wt, BLOCKS, RANK))
        row["ternary"]["relative_error"] = errors_by_block(wt, tdec.blocks)
        row["ternary"]["zero_fraction"] = float(np.mean(wt == 0))
        row["ternary"]["rtn"] = [{"bits": b, "relative_error": rtn_error(wt, b)} for b in (2, 3, 4)]
    return row


def report(rows: list[dict]) -> None:
    for r in rows:
        m, n = r["shape"]
        print(f"\n{m}x{n}: {r['bits_per_block']:.4f} bits per block (k = {RANK})")
        for key in ("randomized", "full", "ternary"):
            if key in r:
                t = r[key]
                print(f"  decompose {key:<10} wall {t['wall_s']:6.1f} s  cpu {t['cpu_s']:6.1f} s  "
                      f"(load {t['load_before']} -> {t['load_after']})")
        for key in ("reconstruct_f32", "reconstruct_reference_f16"):
            print(f"  {key:<27} wall {r[key]['wall_s']:6.2f} s")
        head = "  blocks  bits/w   rel.err (randomized)" + ("   full     excess" if "full" in r else "") + (
            "   ternary s*t" if "ternary" in r else "")
        print(head)
        for b in range(BLOCKS):
            line = f"  {b + 1:6d}  {(b + 1) * r['bits_per_block']:6.3f}   {r['randomized']['relative_error'][b]:.4f}"
            line += " " * 13
            if "full" in r:
                line += f"   {r['full']['relative_error'][b]:.4f}  {100 * r['randomized_excess_over_full'][b]:+.2f}%"
            if "ternary" in r:
                line += f"   {r['ternary']['relative_error'][b]:.4f}"
            print(line)
        for q in r["rtn"]:
            line = f"  RTN {q['bits']}-bit g{GROUP}: {q['bits_per_weight']:.3f} bits/w   rel.err {q['relative_error']:.4f}"
            if "ternary" in r:
                tq = next(x for x in r["ternary"]["rtn"] if x["bits"] == q["bits"])
                line += f"   (ternary s*t: {tq['relative_error']:.4f})"
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help="comma-separated MxK shapes (default 2560x6912,4096x14336)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 512x1024")
    ap.add_argument("--no-full", action="store_true", help="skip the full-SVD decomposition (minutes)")
    ap.add_argument("--no-ternary", action="store_true", help="skip the ternarized matrix")
    ap.add_argument("--threads", help="OpenBLAS threads (default: the environment's)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args()
    shapes_arg = args.shapes or ("512x1024" if args.quick else "2560x6912,4096x14336")
    shapes = [tuple(int(d) for d in s.lower().split("x")) for s in shapes_arg.split(",")]

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    rows = []
    for i, (m, n) in enumerate(shapes):
        rows.append(bench_shape(m, n, full=i == 0 and not args.no_full, ternary=i == 0 and not args.no_ternary))
        print(f"  {m}x{n} done", flush=True)
    report(rows)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": info,
              "config": {"shapes": [list(s) for s in shapes], "blocks": BLOCKS, "rank": RANK, "seed": 0,
                         "matrix": f"Laplace x log-normal(0, {SIGMA}) row and column scales",
                         "rtn": f"asymmetric min/max, group {GROUP} along the input, fp16 scale and zero"},
              "measurements": rows}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
