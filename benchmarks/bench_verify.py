"""Time and peak memory of ``bitpack verify`` and of the reference executor, and llama.cpp beside it.

Run from the repository root, after make_synthetic.py (both shapes):

    python benchmarks/bench_verify.py                         # 2b4t and large, 16 tokens
    python benchmarks/bench_verify.py --shape large --tokens 32 --json /tmp/verify.json

Measurements, each in its own child process (so that peak memory is its own):

* ``2b4t``: ``bitpack verify SRC CONVERTED --tokens ... --json`` where SRC is the synthetic
  2B-4T-shaped bf16 checkpoint and CONVERTED its i2_s GGUF (the CLI through ``python -m
  bitpack.cli``, so interpreter start-up and imports count). The report's ``identical`` flag
  must be true. Then the executor alone (``Executor(open_model(gguf), "exact",
  keep_codes=True).forward``) on the i2_s GGUF, twice: the first pass decodes every projection,
  the second (warm) reuses the decoded codes, as llama.cpp's eval reuses what its load prepared.
* ``large``: the 1bitLLM-large-shaped f32 checkpoint converted to tq2_0
  (``allow_scale_rounding=False``: the ``bitnet`` architecture stores exact ``.scale`` tensors).
  bitpack's executor twice: in ``exact`` numerics, its own definition, for speed
  (``keep_codes="float32"``: the first pass decodes and widens each projection once, the warm
  pass runs BLAS on the kept arrays), and in ``llamacpp`` numerics, which follow llama.cpp's
  x86 float order, for fidelity (``keep_codes=True``); and llama.cpp's prompt evaluation of the same
  GGUF and tokens through llama-cpp-python (``Llama(path, n_ctx=64, n_threads=2,
  logits_all=True, verbose=False)``, ``llm.eval(tokens)``; load time apart; a second, warm
  eval after ``llm.reset()``), and the logit difference between the two
  (``bitpack.verify.logits_report`` of the llamacpp-numerics logits, llama.cpp as the reference;
  max_rel_diff is max|diff| / max|llama.cpp logit|). Skipped with a note when llama_cpp is not importable.

Converted files live in DIR/out/<model>-<fmt>/<model>-<fmt>.gguf (bench_convert.py's layout with
--keep-outputs); a missing one is converted first, in a child process, and that conversion is
reported as a setup row. The inputs are read once (untimed) before anything is timed, so the
timings are warm. Tokens: ``bitpack.verify.default_tokens(vocab_size, N)``, the ids ``bitpack
verify`` itself picks. For each child: wall time (spawn to exit), the timed section inside the
child, CPU time (user + sys), ru_maxrss from ``os.wait4`` and the peak of RssAnon sampled every
20 ms (RSS counts the resident pages of memory-mapped model files as well; anon does not).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_synthetic  # shapes and folder names
from bench_convert import GB, compile_package, machine, model_files, read_all, run_child, run_measured

from bitpack.pipelines.verify import default_tokens, logits_report

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "verify.json"
FORMAT = {"2b4t": "i2_s", "large": "tq2_0"}

# The executor alone: open the model, one forward pass, save the logits.
EXECUTOR = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from bitpack.pipelines.open import open_model
from bitpack.executor.forward import Executor
t1 = time.perf_counter()
path, numerics, tokens, out = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3].split(",")], sys.argv[4]
keep = sys.argv[5] if sys.argv[5] == "float32" else True  # "int8": keep_codes=True
model = open_model(path)
t2 = time.perf_counter()
ex = Executor(model, numerics, keep_codes=keep)
logits = ex.forward(tokens)
t3 = time.perf_counter()
again = ex.forward(tokens)  # the codes decoded by the first pass, as llama.cpp's eval after its load
t4 = time.perf_counter()
np.save(out, logits)
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "forward_s": t3 - t2, "forward_warm_s": t4 - t3,
                  "repeat_identical": bool(np.array_equal(logits, again)), "shape": list(logits.shape),
                  "finite": bool(np.isfinite(logits).all()), "argmax_last": int(logits[-1].argmax())}))
"""

# llama.cpp through llama-cpp-python: load, then the prompt eval (cold, then warm after reset).
LLAMA = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import llama_cpp
t1 = time.perf_counter()
path, tokens, out, n_ctx = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], sys.argv[3], int(sys.argv[4])
llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_threads=2, logits_all=True, verbose=False)
t2 = time.perf_counter()
llm.eval(tokens)
t3 = time.perf_counter()
logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)
llm.reset()
t4 = time.perf_counter()
llm.eval(tokens)
t5 = time.perf_counter()
again = np.array(llm.scores[: len(tokens)], dtype=np.float32)
np.save(out, logits)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "eval_s": t3 - t2, "eval_warm_s": t5 - t4,
                  "repeat_identical": bool(np.array_equal(logits, again)), "n_vocab": llm.n_vocab(),
                  "llama_cpp_version": getattr(llama_cpp, "__version__", "?"),
                  "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()}))
"""


def measure(argv: list[str], folder: Path) -> dict:
    """Run ``argv`` as a child; wall time, rusage and sampled memory, and its JSON output."""
    row, stdout, stderr = run_measured(argv, folder)
    del row["_monitor"]
    doc = None
    for text in (stdout.strip(), *reversed(stdout.strip().splitlines()[-1:])):
        try:
            doc = json.loads(text)
            break
        except json.JSONDecodeError:
            pass
    if doc is None:
        row["error"] = (stderr.strip() or stdout.strip() or f"exit {row['returncode']}, no output")[-4000:]
    else:
        row["child"] = doc
    if stderr.strip():
        row["stderr"] = stderr.strip()[-2000:]
    return row


def ensure_converted(src: Path, fmt: str, out_base: Path, reconvert: bool) -> tuple[Path, dict | None]:
    """The GGUF of ``src`` in ``fmt``; converts it (in a child, measured) when missing."""
    out_dir = out_base / f"{src.name}-{fmt}"
    gguf = out_dir / f"{src.name}-{fmt}.gguf"
    if gguf.exists() and not reconvert:
        print(f"  using existing {gguf} ({gguf.stat().st_size:,} bytes)", flush=True)
        return gguf, None
    print(f"  converting {src.name} -> {fmt} ...", end=" ", flush=True)
    r = run_child(src, fmt, out_dir, False)  # 2b4t i2_s and large tq2_0 need no scale rounding
    if "error" in r:
        print(f"FAILED\n{r['error']}", flush=True)
        raise SystemExit(f"conversion of {src} to {fmt} failed")
    print(f"{r['wall_s']:.1f} s, peak RSS {r['maxrss_bytes'] / GB:.2f} GB (anon {r['peak_rss_anon_bytes'] / GB:.2f} GB)",
          flush=True)
    return gguf, r


def vocab_size(src: Path) -> int:
    return int(json.loads((src / "config.json").read_text())["vocab_size"])


def show(r: dict, what: str) -> None:
    if "error" in r:
        print(f"  {what}: FAILED (exit {r['returncode']}, {r['wall_s']:.1f} s, peak RSS "
              f"{r['maxrss_bytes'] / GB:.2f} GB, anon {r['peak_rss_anon_bytes'] / GB:.2f} GB)\n{r['error']}", flush=True)
    else:
        print(f"  {what}: {r['wall_s']:.2f} s wall, peak RSS {r['maxrss_bytes'] / GB:.2f} GB "
              f"(anon {r['peak_rss_anon_bytes'] / GB:.2f} GB), load {r['load1_before']}->{r['load1_after']}", flush=True)


def bench_2b4t(src: Path, n: int, out_base: Path, work: Path, reconvert: bool) -> dict:
    gguf, conv = ensure_converted(src, "i2_s", out_base, reconvert)
    tokens = default_tokens(vocab_size(src), n)
    t = read_all(model_files(src) + [gguf])
    print(f"  warm-up read of the inputs {t:.1f} s; tokens {tokens}", flush=True)
    res = {"shape": "2b4t", "source": str(src), "format": "i2_s", "gguf": str(gguf), "gguf_bytes": gguf.stat().st_size,
           "tokens": tokens, "conversion": conv}
    argv = [sys.executable, "-m", "bitpack.cli", "verify", str(src), str(gguf), "--tokens",
            ",".join(map(str, tokens)), "--json"]
    res["verify_cmd"] = "bitpack " + " ".join(argv[4:])
    r = measure(argv, work)
    show(r, "bitpack verify")
    if "child" in r:
        print(f"    identical={r['child'].get('identical')} passed={r['child'].get('passed')} "
              f"max_abs_diff={r['child'].get('max_abs_diff')} seconds={r['child'].get('seconds')}", flush=True)
    res["verify"] = r
    r = measure([sys.executable, "-c", EXECUTOR, str(gguf), "exact", ",".join(map(str, tokens)),
                 str(work / "2b4t-exact.npy"), "int8"], work)  # 2.4 G weights: int8 codes kept (2.4 GB)
    show(r, "executor (exact, i2_s)")
    res["executor"] = r
    return res


def bench_large(src: Path, n: int, out_base: Path, work: Path, reconvert: bool) -> dict:
    gguf, conv = ensure_converted(src, "tq2_0", out_base, reconvert)
    tokens = default_tokens(vocab_size(src), n)
    t = read_all([gguf])
    print(f"  warm-up read of the GGUF {t:.1f} s; tokens {tokens}", flush=True)
    res = {"shape": "large", "source": str(src), "format": "tq2_0", "gguf": str(gguf),
           "gguf_bytes": gguf.stat().st_size, "tokens": tokens, "conversion": conv}
    # speed: bitpack's own numerics with the codes kept widened (the warm pass is BLAS on the kept
    # arrays); fidelity: llamacpp numerics, which follow the x86 build's float order (int8 codes kept)
    r = measure([sys.executable, "-c", EXECUTOR, str(gguf), "exact", ",".join(map(str, tokens)),
                 str(work / "large-exact.npy"), "float32"], work)
    show(r, "executor (exact, tq2_0)")
    res["executor"] = r
    ours = work / "large-llamacpp.npy"
    r = measure([sys.executable, "-c", EXECUTOR, str(gguf), "llamacpp", ",".join(map(str, tokens)), str(ours),
                 "int8"], work)
    show(r, "executor (llamacpp, tq2_0)")
    res["executor_llamacpp"] = r
    if importlib.util.find_spec("llama_cpp") is None:
        res["llama_cpp"] = {"skipped": "llama_cpp (llama-cpp-python) is not installed"}
        print("  llama.cpp: skipped (llama_cpp is not importable; pip install llama-cpp-python)", flush=True)
        return res
    theirs = work / "large-llama.cpp.npy"
    n_ctx = max(64, 1 << (n - 1).bit_length())
    r = measure([sys.executable, "-c", LLAMA, str(gguf), ",".join(map(str, tokens)), str(theirs), str(n_ctx)], work)
    r["params"] = {"n_ctx": n_ctx, "n_threads": 2, "logits_all": True}
    show(r, "llama.cpp (llama-cpp-python)")
    res["llama_cpp"] = r
    if "child" in r and "child" in res["executor_llamacpp"]:
        ref, cand = np.load(theirs), np.load(ours)
        if ref.shape != cand.shape:
            res["comparison"] = {"error": f"shapes differ: llama.cpp {ref.shape}, bitpack {cand.shape}"}
        else:
            res["comparison"] = logits_report(ref, cand)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(cand.astype(np.float64) - ref) / np.abs(ref.astype(np.float64))
            res["comparison"]["max_elementwise_rel_diff_where_abs_ref_ge_1"] = (
                float(rel[np.abs(ref) >= 1].max()) if (np.abs(ref) >= 1).any() else None)
            per_pos = np.abs(cand.astype(np.float64) - ref).max(-1) / max(float(np.abs(ref).max()), 1e-30)
            res["comparison"]["max_rel_diff_per_position"] = [float(x) for x in per_pos]
            res["comparison"]["positions_within_1e-5"] = [int(i) for i in np.flatnonzero(per_pos <= 1e-5)]
        print(f"    bitpack vs llama.cpp: {res['comparison']}", flush=True)
    return res


def cells(r: dict | None) -> list[str]:
    """wall, cpu (sys), peak RSS, peak anon of one measured child."""
    if r is None:
        return ["", "", "", ""]
    return [f"{r['wall_s']:.2f}", f"{r['user_s'] + r['sys_s']:.1f} ({r['sys_s']:.1f})",
            f"{r['maxrss_bytes'] / GB:.2f} GB", f"{r['peak_rss_anon_bytes'] / GB:.2f} GB"]


def table(results: list[dict], n: int) -> str:
    head = ["shape", "measurement", "wall s", "timed s", "cpu s (sys)", "peak RSS", "peak anon", "result"]
    rows, notes = [], []

    def failed(tag: str, what: str, r: dict) -> None:
        rows.append([tag, what, *cells(r)[:1], "FAILED", *cells(r)[1:], f"exit {r['returncode']}"])
        notes.append(f"{tag} {what}: {r['error'].strip().splitlines()[-1][:600]}")

    for m in results:
        tag = m["shape"]
        c = m["conversion"]
        if c is not None:
            rows.append([tag, f"convert -> {m['format']} (setup)", *cells(c)[:1], f"{c['report']['seconds']:.2f}",
                         *cells(c)[1:], f"{c['output_bytes']:,} bytes"])
        else:
            rows.append([tag, f"{m['format']} GGUF (existing)", "", "", "", "", "", f"{m['gguf_bytes']:,} bytes"])
        if "verify" in m:
            r = m["verify"]
            if "child" not in r:
                failed(tag, "bitpack verify", r)
            else:
                d = r["child"]
                rows.append([tag, f"bitpack verify bf16 vs {m['format']}", *cells(r)[:1], f"{d['seconds']:.2f}",
                             *cells(r)[1:], f"identical={d['identical']} max_abs_diff={d['max_abs_diff']}"])
                if not d["identical"]:
                    notes.append(f"{tag}: verify reports identical=False: {d.get('metadata_differences')} "
                                 f"{d.get('differing_tensors')}")
        for key, numerics in (("executor", "exact"), ("executor_llamacpp", "llamacpp")):
            if key not in m:
                continue
            r = m[key]
            if "child" not in r:
                failed(tag, f"executor {numerics}", r)
            else:
                d = r["child"]
                rows.append([tag, f"executor {numerics}, {m['format']} GGUF", *cells(r)[:1], f"{d['forward_s']:.2f}",
                             *cells(r)[1:], f"open {d['open_s']:.2f} s; warm forward {d['forward_warm_s']:.2f} s; "
                             f"logits {'x'.join(map(str, d['shape']))}"
                             + ("" if d["finite"] else " NOT FINITE")])
        if "llama_cpp" in m:
            r = m["llama_cpp"]
            if "skipped" in r:
                rows.append([tag, "llama.cpp", "", "", "", "", "", "skipped"])
                notes.append(f"{tag} llama.cpp: {r['skipped']}")
            elif "child" not in r:
                failed(tag, "llama.cpp load + eval", r)
            else:
                d = r["child"]
                rows.append([tag, "llama.cpp load (Llama(...))", "", f"{d['load_s']:.2f}", "", "", "", ""])
                rows.append([tag, f"llama.cpp eval {n} tokens", *cells(r)[:1], f"{d['eval_s']:.2f}", *cells(r)[1:],
                             f"warm eval {d['eval_warm_s']:.2f} s"])
        if "comparison" in m:
            d = m["comparison"]
            if "error" in d:
                rows.append([tag, "bitpack vs llama.cpp logits", "", "", "", "", "", "FAILED"])
                notes.append(f"{tag}: {d['error']}")
            else:
                rows.append([tag, "bitpack vs llama.cpp logits", "", "", "", "", "",
                             f"max_rel {d['max_rel_diff']:.2e}, max_abs {d['max_abs_diff']:.2e}, "
                             + f"top1 {d['top1_agreement']:.3f}"])
                if d["max_rel_diff"] > 1e-5:
                    good = d["positions_within_1e-5"]
                    notes.append(f"{tag}: bitpack (llamacpp numerics) vs llama.cpp: max_rel {d['max_rel_diff']:.2e} "
                                 f"(expected below 1e-6: the hidden states are bit-exact, the head's F16 sum order is not); positions within 1e-5: {good or 'none'} of {len(d['max_rel_diff_per_position'])}; "
                                 "per position: " + " ".join(f"{x:.0e}" for x in d["max_rel_diff_per_position"]))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(row: list) -> str:  # text columns left-aligned, numbers right-aligned
        return "  ".join(str(x).ljust(w) if i in (0, 1, 7) else str(x).rjust(w)
                         for i, (x, w) in enumerate(zip(row, widths))).rstrip()

    lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    lines.append(f"\n'wall s': spawn to exit of the child (interpreter start-up and imports included); 'timed s': "
                 f"inside the child: verify's report seconds, Executor.forward only, Llama() / llm.eval. "
                 f"{n} tokens everywhere.")
    return "\n".join(lines + [f"note: {x}" for x in notes])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=make_synthetic.DEFAULT_DIR,
                    help=f"folder of the synthetic checkpoints; outputs go to DIR/out (default {make_synthetic.DEFAULT_DIR})")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per forward pass (default 16)")
    ap.add_argument("--shape", default="2b4t,large", help="comma list of 2b4t, large (default both)")
    ap.add_argument("--reconvert", action="store_true", help="convert again even when the GGUF exists")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    args = ap.parse_args()
    compile_package()
    if args.tokens < 1:
        ap.error("--tokens must be >= 1")
    shapes = args.shape.split(",")
    for shape in shapes:
        if shape not in FORMAT:
            ap.error(f"unknown shape {shape!r} (choose from {', '.join(FORMAT)})")
        src = make_synthetic.model_dir(args.dir, shape)
        if not (src / "model.safetensors").exists():
            ap.error(f"{src} has no model.safetensors; run: python benchmarks/make_synthetic.py --shape {shape} "
                     f"--dir {args.dir}")
    out_base = args.dir / "out"
    out_base.mkdir(parents=True, exist_ok=True)

    info = machine()
    try:
        info["llama_cpp_python"] = version("llama_cpp_python")
    except PackageNotFoundError:
        info["llama_cpp_python"] = None
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {info['nproc']} cores", flush=True)

    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        for shape in shapes:
            src = make_synthetic.model_dir(args.dir, shape)
            print(f"\n=== {shape}: {src}", flush=True)
            bench = bench_2b4t if shape == "2b4t" else bench_large
            results.append(bench(src, args.tokens, out_base, Path(tmp), args.reconvert))
    load_end = os.getloadavg()

    print()
    print(table(results, args.tokens))
    llama = next((m["llama_cpp"]["child"] for m in results if "child" in m.get("llama_cpp", {})), None)
    if llama:
        print(f"\nllama.cpp system info: {llama['system_info']}")
    print(f"\nload average (1/5/15 min) at start {' '.join(f'{x:.2f}' for x in load_start)}, at end "
          f"{' '.join(f'{x:.2f}' for x in load_end)} on {info['nproc']} cores"
          + (" (the end value includes this benchmark's own children)"
             + ("; the machine was busy before the start: timings are inflated" if load_start[0] > 1.0 else "")))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {"date": started, "machine": info, "load_avg_start": load_start, "load_avg_end": load_end,
           "config": {"tokens": args.tokens, "dir": str(args.dir), "out_dir": str(out_base)}, "models": results}
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
