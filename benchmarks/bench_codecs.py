"""Encode/decode throughput of every bitpack codec, with PyPI gguf's NumPy quantizer as anchor.

Run from the repository root:

    python benchmarks/bench_codecs.py            # 2560x6912 and 6912x2560, best of 5
    python benchmarks/bench_codecs.py --quick    # 256x1024, best of 2: a few seconds
    python benchmarks/bench_codecs.py --shapes 2560x2560 --repeat 10 --json /tmp/out.json

Rates are million weights per second (M*K / seconds / 1e6), single-threaded (NumPy
elementwise ops), from time.perf_counter after one warm-up call: best and median of --repeat.

* bitpack: codec.encode(codes, scale) and codec.decode(buf, shape) for every codec in
  list_codecs() and the layout variants in VARIANTS (i2_s x86_1x4, i2_s arm), on ternary int8 codes (default_rng(0) per shape, uniform over -1/0/+1) and
  scale 1.5546875. Shapes a codec refuses are skipped and shown as such.
  q1_0 is binary: it gets the signs of those codes (np.where(codes >= 0, 1, -1)). The group
  codecs (q2_0, q1_0, pq2_0, ptq1_0) decode to per-group scales, all equal to the one given.
  PyPI gguf 0.19.0 has no anchor for them: it lacks Q2_0 (42), PQ2_0 and PTQ1_0, and its
  Q1_0 (41) raises NotImplementedError in quantize and dequantize.
* gguf: gguf.quants.quantize(codes * scale, TQ1_0 / TQ2_0) and gguf.quants.dequantize, which
  go float32 -> bytes -> float32. The "from float" rows time bitpack on that same path:
  np.rint(w / scale) to int8 then encode; decode then codes * scale as float32.
  Speedups bitpack/gguf are printed for the raw codec and for this apples-to-apples path.

Targets: >= 500 M w/s per codec (best rate, minimum over shapes) and >= 5x gguf for
tq1_0 / tq2_0 (float path). --json (default benchmarks/results/codecs.json) gets the
machine, the date and every timing.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # keep any BLAS-backed NumPy call on one core

import argparse
import datetime
import json
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np

from bitpack.codecs import codec_class, get_codec, list_codecs
from bitpack.errors import ShapeError

SCALE = np.float32(1.5546875)
TARGET_MWS = 500.0
TARGET_SPEEDUP = 5.0
ANCHORED = {"tq1_0": gguf.GGMLQuantizationType.TQ1_0, "tq2_0": gguf.GGMLQuantizationType.TQ2_0}
TERNARY = [n for n in list_codecs() if not codec_class(n).lossy]  # bitstack: benchmarks/bench_bitstack.py
# Rows for codec parameters that change the byte layout: label -> (codec, params).
VARIANTS = {"i2_s x86_1x4": ("i2_s", {"layout": "x86_1x4"}), "i2_s arm": ("i2_s", {"layout": "arm"})}
ROWS = {**{n: (n, {}) for n in TERNARY}, **VARIANTS}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "codecs.json"
BINARY = {"q1_0"}  # codecs that store no zeros: benchmarked on the signs of the ternary codes


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    u = platform.uname()
    return {
        "processor": platform.processor() or u.machine, "uname": " ".join([u.system, u.node, u.release, u.machine]),
        "cpu_model": cpu, "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__, "gguf": version("gguf"),
        "bitpack": version("bitpack"),
    }


def timed(fn, n: int, repeat: int) -> dict:
    """Warm up once, then time ``repeat`` calls; rates in million weights per second."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"times_s": times, "best_mws": n / min(times) / 1e6, "median_mws": n / statistics.median(times) / 1e6}


def bench_bitpack(name: str, codes: np.ndarray, repeat: int, from_float: bool = False) -> dict:
    codec_name, params = ROWS[name]
    codec, shape, n = get_codec(codec_name, **params), codes.shape, codes.size
    if codec_name in BINARY:
        codes = np.where(codes >= 0, 1, -1).astype(np.int8)
    row = {"impl": "bitpack", "codec": name + (" from float" if from_float else ""), "shape": list(shape)}
    try:
        codec.check(shape)
    except ShapeError as e:
        return row | {"skipped": str(e)}
    buf = codec.encode(codes, SCALE)
    decoded, scale = codec.decode(buf, shape)
    row["roundtrip_ok"] = bool(np.array_equal(decoded, codes) and (scale is None or bool(np.all(scale == SCALE))))
    if from_float:
        w = codes.astype(np.float32) * SCALE
        row["encode"] = timed(lambda: codec.encode(np.rint(w / SCALE).astype(np.int8), SCALE), n, repeat)
        row["decode"] = timed(lambda: np.multiply(codec.decode(buf, shape)[0], SCALE, dtype=np.float32), n, repeat)
    else:
        row["encode"] = timed(lambda: codec.encode(codes, SCALE), n, repeat)
        row["decode"] = timed(lambda: codec.decode(buf, shape), n, repeat)
    return row | {"bytes": int(buf.nbytes), "bits_per_weight": 8 * buf.nbytes / n}


def bench_gguf(name: str, codes: np.ndarray, repeat: int) -> dict:
    qtype, n = ANCHORED[name], codes.size
    row = {"impl": "gguf", "codec": f"gguf {qtype.name}", "anchors": name, "shape": list(codes.shape)}
    try:
        get_codec(name).check(codes.shape)  # gguf has the same K % 256 rule
    except ShapeError as e:
        return row | {"skipped": str(e)}
    w = codes.astype(np.float32) * SCALE
    buf = gguf.quants.quantize(w, qtype)
    row["roundtrip_ok"] = bool(np.array_equal(gguf.quants.dequantize(buf, qtype), w))
    row["same_bytes_as_bitpack"] = bool(np.array_equal(buf.reshape(-1), get_codec(name).encode(codes, SCALE)))
    row["encode"] = timed(lambda: gguf.quants.quantize(w, qtype), n, repeat)
    row["decode"] = timed(lambda: gguf.quants.dequantize(buf, qtype), n, repeat)
    return row | {"bytes": int(buf.nbytes), "bits_per_weight": 8 * buf.nbytes / n}


def table(rows: list[dict]) -> str:
    head = ["codec", "shape", "enc best", "enc median", "dec best", "dec median", "bytes", "bits/w"]
    lines = []
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        if "skipped" in r:
            lines.append([r["codec"], shape, "skipped: " + r["skipped"]])
            continue
        e, d = r["encode"], r["decode"]
        rates = [f"{x:.1f}" for x in (e["best_mws"], e["median_mws"], d["best_mws"], d["median_mws"])]
        lines.append([r["codec"], shape, *rates, f"{r['bytes']:,}", f"{r['bits_per_weight']:.4f}"])
    widths = [max(len(head[i]), *(len(x[i]) for x in lines if len(x) == len(head))) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        if len(cells) < len(head):  # a skipped row: the reason spans the numeric columns
            return "  ".join(c.ljust(w) for c, w in zip(cells[:2], widths)) + "  " + cells[2]
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(fmt(head))
    return "\n".join(["rates in M weights/s", fmt(head), rule, *map(fmt, lines)])


def speedups(rows: list[dict]) -> list[dict]:
    """bitpack/gguf best-rate ratios for every gguf row, for the raw codec and the float path."""
    by = {(r["codec"], tuple(r["shape"])): r for r in rows if "skipped" not in r}
    out = []
    for g in (r for r in rows if r["impl"] == "gguf" and "skipped" not in r):
        for path in (g["anchors"], g["anchors"] + " from float"):
            if b := by.get((path, tuple(g["shape"]))):
                ratio = {op: b[op]["best_mws"] / g[op]["best_mws"] for op in ("encode", "decode")}
                out.append({"codec": g["anchors"], "path": path, "shape": g["shape"], **ratio})
    return out


def summarize(rows: list[dict], ups: list[dict]) -> list[dict]:
    out = []
    for name in ROWS:
        mine = [r for r in rows if r["impl"] == "bitpack" and r["codec"] == name]
        done = [r for r in mine if "skipped" not in r]
        s = {"codec": name, "skipped_shapes": [r["shape"] for r in mine if "skipped" in r]}
        if not done:
            out.append(s)
            continue
        s["min_encode_mws"] = min(r["encode"]["best_mws"] for r in done)
        s["min_decode_mws"] = min(r["decode"]["best_mws"] for r in done)
        s["meets_rate_target"] = min(s["min_encode_mws"], s["min_decode_mws"]) >= TARGET_MWS
        float_ups = [u for u in ups if u["path"] == name + " from float"]
        if float_ups:
            s["min_speedup_vs_gguf"] = min(min(u["encode"], u["decode"]) for u in float_ups)
            s["meets_speedup_target"] = s["min_speedup_vs_gguf"] >= TARGET_SPEEDUP
        out.append(s)
    return out


def report(rows: list[dict], ups: list[dict], summary: list[dict]) -> None:
    print(table(rows))
    bad = [f"{r['codec']} {r['shape']}" for r in rows
           if r.get("roundtrip_ok") is False or r.get("same_bytes_as_bitpack") is False]
    print("\ncorrectness:", "MISMATCH in " + "; ".join(bad) if bad else "round trips exact, gguf bytes == bitpack bytes")
    print("\nspeedup bitpack/gguf (best rates):")
    for u in ups:
        shape = "x".join(map(str, u["shape"]))
        print(f"  {u['path']:<18} {shape:<10} encode {u['encode']:6.2f}x  decode {u['decode']:6.2f}x")
    print(f"\nsummary (min over shapes of best rate; targets >= {TARGET_MWS:.0f} M w/s, "
          f">= {TARGET_SPEEDUP:.0f}x gguf on the float path):")
    for s in summary:
        if "min_encode_mws" not in s:
            print(f"  {s['codec']:<14} every shape skipped")
            continue
        line = (f"  {s['codec']:<14} encode {s['min_encode_mws']:8.1f}  decode {s['min_decode_mws']:8.1f}  "
                f"rate target: {'MET' if s['meets_rate_target'] else 'not met'}")
        if "min_speedup_vs_gguf" in s:
            line += f"; vs gguf {s['min_speedup_vs_gguf']:.2f}x: {'MET' if s['meets_speedup_target'] else 'not met'}"
        if s["skipped_shapes"]:
            line += f" ({len(s['skipped_shapes'])} shape(s) skipped)"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help="comma-separated MxK shapes (default 2560x6912,6912x2560)")
    ap.add_argument("--repeat", type=int, help="timed calls per measurement (default 5)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 256x1024, repeat 2")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args()
    shapes_arg = args.shapes or ("256x1024" if args.quick else "2560x6912,6912x2560")
    repeat = args.repeat or (2 if args.quick else 5)
    shapes = [tuple(int(d) for d in s.lower().split("x")) for s in shapes_arg.split(",")]

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"shapes: {shapes_arg}; warm-up 1, best and median of {repeat}; scale {SCALE}; single-threaded\n")

    rows, anchor_rows = [], []
    for shape in shapes:
        codes = np.random.default_rng(0).integers(-1, 2, size=shape, dtype=np.int8)
        rows += [bench_bitpack(name, codes, repeat) for name in ROWS]
        for name in ANCHORED:
            anchor_rows += [bench_bitpack(name, codes, repeat, from_float=True), bench_gguf(name, codes, repeat)]
    rows += anchor_rows
    ups = speedups(rows)
    summary = summarize(rows, ups)
    report(rows, ups, summary)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "config": {"shapes": [list(s) for s in shapes], "repeat": repeat, "warmup": 1, "seed": 0,
                         "scale": float(SCALE), "target_mws": TARGET_MWS, "target_speedup": TARGET_SPEEDUP},
              "measurements": rows, "speedups": ups, "summary": summary}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
