"""End-to-end conversion time and peak memory of bitpack on synthetic checkpoints of the real shapes.

Run from the repository root, after make_synthetic.py (or pass --make):

    python benchmarks/make_synthetic.py                       # 2B-4T-bf16 shape, ~4.8 GB
    python benchmarks/bench_convert.py                        # i2_s, tl2, tq1_0 on it
    python benchmarks/bench_convert.py --shape large --make   # 1bitLLM-large F32: tq2_0, i2_s, tq1_0, tl2
    python benchmarks/bench_convert.py --shape 2b4t,large --repeat 3 --json /tmp/convert.json
    python benchmarks/bench_convert.py --model /path/to/hf-dir --formats i2_s

Every conversion runs in its own child process (``python -c`` calling
``bitpack.convert.convert(src, fmt, ConvertOptions(output=..., overwrite=True))``), so its
peak memory is its own. For each run the script records

* wall time: from spawning the child to its exit (interpreter start-up and imports included),
  and bitpack's own ``seconds`` from the report (open + plan + write, fsync included);
* peak RSS: the child's ``ru_maxrss`` from ``os.wait4`` (per child, not the
  RUSAGE_CHILDREN maximum over all children). bitpack memory-maps the input, so RSS counts
  the resident pages of the mapped file as well; the peak of RssAnon (anonymous memory only,
  sampled from /proc/PID/status every 20 ms) is shown beside it;
* input read rate: input bytes / wall seconds;
* the peak bytes in the (fresh, otherwise empty) output folder during the run, to catch
  temporary files beyond the output itself.

Baselines, in the same run: (a) reading the input files in 64 MiB chunks (warm: the input is
read once, untimed, before anything is timed) and (b) writing a file of the converted output's
size in 64 MiB chunks of zeros, then fsync (as bitpack fsyncs its output). Each run is repeated
--repeat times; tables show the best and the median. The design targets and the measured
anchors of the upstream converters are printed beside the results. Results go to --json
(default benchmarks/results/convert.json) with the machine, the load average and every run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_synthetic  # the sibling script: shapes and folder names

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "convert.json"
CHUNK = 64 << 20
GB = 1e9
DEFAULT_FORMATS = {"2b4t": ["i2_s", "tl2", "tq1_0"], "large": ["tq2_0", "i2_s", "tq1_0", "tl2"], None: ["i2_s"]}

# The design "Performance targets": measured anchors (2-core x86, warm inputs) and targets.
TARGETS = {
    ("2b4t", "i2_s"): {"seconds": 10.0, "peak_gb": 1.0,
                       "anchor": "bitnet.cpp path: 124 s, 13.9 GB peak + 18 GB temp files"},
    ("2b4t", "tl2"): {"anchor": "none (no upstream TL2 preset for 2B-4T shapes)"},
    ("2b4t", "tq1_0"): {"anchor": "none (nothing upstream converts 2B-4T bf16 to TQ1_0)"},
    ("large", "tq2_0"): {"seconds": 1.7, "anchor": "llama.cpp convert_hf_to_gguf.py: 8.7-9.4 s, 0.5 GB peak"},
    ("large", "i2_s"): {"seconds": 1.7, "anchor": "bitnet.cpp: 24 s, 6.7 GB peak"},
    ("large", "tq1_0"): {"anchor": "llama.cpp convert_hf_to_gguf.py: 10.4-11.8 s"},
    ("large", "tl2"): {"anchor": "none measured"},
}

# The child: time the import separately, convert, print the report without the tensor list.
CHILD = r"""
import json, os, sys, time
from pathlib import Path
t0 = time.perf_counter()
from bitpack.pipelines.convert import ConvertOptions, convert
t1 = time.perf_counter()
src, fmt, out, asr = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
rep = convert(src, fmt, ConvertOptions(output=Path(out), overwrite=True, allow_scale_rounding=asr,
                                      receipt=os.environ.get("BITPACK_BENCH_RECEIPT", "1") == "1"))
t2 = time.perf_counter()
tensors = rep.pop("tensors", [])
rep["n_tensors"] = len(tensors)
rep["types"] = sorted({t.get("type") or t.get("dtype") or "?" for t in tensors})
print(json.dumps({"import_s": t1 - t0, "convert_s": t2 - t1, "report": rep}, default=str))
"""


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    u = platform.uname()
    import numpy as np
    return {
        "processor": platform.processor() or u.machine, "uname": f"{u.system} {u.node} {u.release} {u.machine}",
        "cpu_model": cpu, "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
        "mem_total_gb": round(mem / GB, 1), "python": platform.python_version(), "numpy": np.__version__,
        "gguf": version("gguf"), "bitpack": version("bitpack"),
        "blas_threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                        "MKL_NUM_THREADS") if k in os.environ},
    }


def load() -> float:
    return round(os.getloadavg()[0], 2)


def model_files(src: Path) -> list[Path]:
    return sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]


def read_all(files: list[Path]) -> float:
    """cat FILES > /dev/null in 64 MiB chunks; returns seconds."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    for f in files:
        with f.open("rb", buffering=0) as fh:
            while fh.readinto(view):
                pass
    return time.perf_counter() - t0


def made(path: Path, make, layers: int) -> Path:
    """``path``, written first by ``make(path, layers)`` when it is missing (timed, on stderr):
    the synthetic inputs of bench_repack.py and bench_bonsai.py, made once and reused."""
    if not path.exists():
        t0 = time.perf_counter()
        make(path, layers)
        print(f"made {path} ({path.stat().st_size:,} bytes) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path


def finish(results: dict, path: Path | None) -> int:
    """The end of bench_repack.py and bench_bonsai.py: the load average at the end recorded and,
    given ``path`` (--json), the results written there; the exit status."""
    results["load_end"] = os.getloadavg()[0]
    if path:
        path.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def write_zeros(path: Path, size: int) -> float:
    """Write ``size`` zero bytes in 64 MiB chunks, fsync; returns seconds. The file is removed."""
    zeros = bytes(CHUNK)
    t0 = time.perf_counter()
    try:
        with path.open("wb", buffering=0) as fh:
            left = size
            while left:
                left -= fh.write(zeros[:min(CHUNK, left)])
            os.fsync(fh.fileno())
        return time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)


class Monitor(threading.Thread):
    """Peak RssAnon / RssFile / VmRSS of a pid and peak bytes in a folder, sampled every 20 ms."""

    def __init__(self, pid: int, folder: Path, interval: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.folder, self.interval = pid, folder, interval
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0, "folder_bytes": 0}
        self.stop = threading.Event()

    def sample(self) -> None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(rest.split()[0]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
        try:
            size = sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(self.folder) if e.is_file())
            self.peak["folder_bytes"] = max(self.peak["folder_bytes"], size)
        except OSError:
            pass

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)


def run_child(src: Path, fmt: str, out_dir: Path, allow_rounding: bool) -> dict:
    """One conversion in a fresh process; wall time, rusage peak RSS and sampled memory."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    out = out_dir / f"{src.name}-{fmt}.gguf"
    argv = [sys.executable, "-c", CHILD, str(src), fmt, str(out), "1" if allow_rounding else "0"]
    row, stdout, stderr = run_measured(argv, out_dir)
    row["peak_folder_bytes"] = row.pop("_monitor").peak["folder_bytes"]
    if row["returncode"] != 0:
        return row | {"error": (stderr.strip() or stdout.strip())[-4000:]}
    try:
        child = json.loads(stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return row | {"error": "unparsable child output: " + (stdout + stderr)[-4000:]}
    row |= {"import_s": child["import_s"], "convert_s": child["convert_s"], "report": child["report"]}
    row["output_bytes"] = out.stat().st_size if out.exists() else None
    extra = sorted(p.name for p in out_dir.iterdir() if p != out)
    row["other_files"] = extra  # e.g. the TL kernel_config.ini
    if stderr.strip():
        row["stderr"] = stderr.strip()[-2000:]
    return row


def child_env() -> dict[str, str]:
    """The children's environment: bytecode caching on, as after ``pip install``. Shells that
    set PYTHONDONTWRITEBYTECODE (this workplace's do) make every start compile an editable
    install's modules from source, about 0.13 s for bitpack's, which no user pays; the package
    is compiled once before anything is timed (compile_package)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def compile_package() -> None:
    """Write bitpack's bytecode (__pycache__, git-ignored) so the first timed child does not pay for it."""
    import compileall

    import bitpack

    compileall.compile_dir(Path(bitpack.__file__).parent, quiet=1)


def run_measured(argv: list[str], folder: Path) -> tuple[dict, str, str]:
    """Run ``argv`` as a child process: wall time, rusage and sampled memory (and the size of
    ``folder``); returns (row, stdout, stderr). bench_verify.py measures the same way."""
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        load0 = load()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=so, stderr=se, env=child_env())
        mon = Monitor(proc.pid, folder)
        mon.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
        mon.stop.set()
        mon.join()
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read().decode(errors="replace"), se.read().decode(errors="replace")
    row = {"wall_s": wall, "maxrss_bytes": ru.ru_maxrss * 1024, "peak_rss_anon_bytes": mon.peak["RssAnon"],
           "peak_rss_file_bytes": mon.peak["RssFile"], "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
           "majflt": ru.ru_majflt, "returncode": proc.returncode, "load1_before": load0, "load1_after": load(),
           "_monitor": mon}
    return row, stdout, stderr


def largest_tensor_bytes(src: Path) -> tuple[str, int]:
    from bitpack.containers.safetensors_read import SafetensorsFile
    best = ("?", 0)
    for f in model_files(src):
        if f.suffix == ".safetensors":
            with SafetensorsFile(f) as st:
                for n in st.names():
                    if st.info(n).nbytes > best[1]:
                        best = (n, st.info(n).nbytes)
    return best


ANCHOR_FORMATS = ("tq1_0", "tq2_0")  # what llama.cpp's converter writes (--outtype)


def run_anchor(llama_cpp: Path, src: Path, fmt: str, out_dir: Path) -> dict:
    """llama.cpp's own converter on the same checkpoint, to the same format, in a fresh process
    (measured as bitpack's children are); its output is removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"anchor-{fmt}.gguf"
    argv = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(src), "--outtype", fmt, "--outfile", str(out)]
    row, stdout, stderr = run_measured(argv, out_dir)
    row.pop("_monitor")
    if row["returncode"] != 0:
        row["error"] = (stderr.strip() or stdout.strip())[-2000:]
    out.unlink(missing_ok=True)
    return row


def bench_model(src: Path, shape: str | None, formats: list[str], repeat: int, out_base: Path,
                keep: bool, allow_rounding: bool = False, llama_cpp: Path | None = None) -> dict:
    files = model_files(src)
    in_bytes = sum(f.stat().st_size for f in files)
    lt_name, lt_bytes = largest_tensor_bytes(src)
    print(f"\n=== {src}  ({shape or 'custom'}; {in_bytes:,} bytes in {len(files)} files; largest tensor "
          f"{lt_name} {lt_bytes / GB:.3f} GB)", flush=True)
    warm = read_all(files)
    reads = [read_all(files) for _ in range(max(repeat, 2))]
    print(f"warm-up read {warm:.2f} s; timed reads {', '.join(f'{r:.2f}' for r in reads)} s", flush=True)
    res = {"model": str(src), "shape": shape, "input_bytes": in_bytes, "files": [f.name for f in files],
           "largest_tensor": {"name": lt_name, "bytes": lt_bytes},
           "read_baseline": {"times_s": reads, "warmup_s": warm}, "conversions": []}
    for fmt in formats:
        # bitnet-b1.58 graph: no separate scale tensors, the scale lives in the fp16 block scales
        asr = fmt in ("tq1_0", "tq2_0") and (shape == "2b4t" or allow_rounding)
        out_dir = out_base / f"{src.name}-{fmt}"
        runs, writes, anchors = [], [], []
        for i in range(repeat):
            print(f"  {fmt} run {i + 1}/{repeat} ...", end=" ", flush=True)
            r = run_child(src, fmt, out_dir, asr)
            runs.append(r)
            if "error" in r:
                print(f"FAILED (exit {r['returncode']}, {r['wall_s']:.1f} s, peak RSS "
                      f"{r['maxrss_bytes'] / GB:.2f} GB)\n{r['error']}", flush=True)
                break
            print(f"{r['wall_s']:.2f} s wall, {r['report']['seconds']:.2f} s in convert(), peak RSS "
                  f"{r['maxrss_bytes'] / GB:.2f} GB (anon {r['peak_rss_anon_bytes'] / GB:.2f} GB), load "
                  f"{r['load1_before']}->{r['load1_after']}", flush=True)
            writes.append(write_zeros(out_dir / ".baseline-write", r["output_bytes"]))
            if i < repeat - 1 or not keep:
                shutil.rmtree(out_dir, ignore_errors=True)
            if llama_cpp is not None and fmt in ANCHOR_FORMATS:  # interleaved: the same minute's load
                a = run_anchor(llama_cpp, src, fmt, out_base / f"{src.name}-{fmt}-anchor")
                anchors.append(a)
                print("    llama.cpp convert_hf_to_gguf.py: " + (f"FAILED: {a['error'][-300:]}" if "error" in a else
                      f"{a['wall_s']:.2f} s wall, peak RSS {a['maxrss_bytes'] / GB:.2f} GB"), flush=True)
        res["conversions"].append({"format": fmt, "allow_scale_rounding": asr, "runs": runs,
                                   "write_baseline": {"times_s": writes}, "anchor_runs": anchors})
    return res


def best_median(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


def tables(results: list[dict], repeat: int) -> str:
    head = ["model", "format", "wall s", "med s", "convert()", "cpu s (sys)", "peak RSS", "peak anon", "read MB/s",
            "output bytes", "write s", "I/O floor"]
    rows, notes, warned = [], [], {}
    for m in results:
        tag = m["shape"] or Path(m["model"]).name
        rb, rm = best_median(m["read_baseline"]["times_s"])
        rows.append([tag, "(read input)", f"{rb:.2f}", f"{rm:.2f}", "", "", "", "",
                     f"{m['input_bytes'] / rb / 1e6:.0f}", f"{m['input_bytes']:,}", "", ""])
        for c in m["conversions"]:
            ok = [r for r in c["runs"] if "error" not in r]
            if not ok:
                r = c["runs"][-1]
                rows.append([tag, c["format"], "FAILED", "", "", "", f"{r['maxrss_bytes'] / GB:.2f} GB",
                             f"{r['peak_rss_anon_bytes'] / GB:.2f} GB", "", "", "", ""])
                notes.append(f"{tag} {c['format']}: {r['error'].strip().splitlines()[-1][:600]}")
                continue
            wb, wm = best_median([r["wall_s"] for r in ok])
            cb = min(r["report"]["seconds"] for r in ok)
            fast = min(ok, key=lambda r: r["wall_s"])
            cpu = f"{fast['user_s'] + fast['sys_s']:.1f} ({fast['sys_s']:.1f})"
            rss = max(r["maxrss_bytes"] for r in ok)
            anon = max(r["peak_rss_anon_bytes"] for r in ok)
            out = ok[0]["output_bytes"]
            wr = min(c["write_baseline"]["times_s"])
            rows.append([tag, c["format"], f"{wb:.2f}", f"{wm:.2f}", f"{cb:.2f}", cpu, f"{rss / GB:.2f} GB",
                         f"{anon / GB:.2f} GB", f"{m['input_bytes'] / wb / 1e6:.0f}", f"{out:,}",
                         f"{wr:.2f}", f"{rb + wr:.2f}"])
            if c["allow_scale_rounding"]:
                n = len(ok[0]["report"].get("rounded") or [])
                notes.append(f"{tag} {c['format']}: converted with allow_scale_rounding=True: the bitnet-b1.58 "
                             f"graph has no separate scale tensors, so the per-tensor scale is stored as the "
                             f"fp16 block scale, and random absmean scales are not fp16-exact "
                             f"({n} scales rounded)")
            peak_dir = max(r["peak_folder_bytes"] for r in ok)
            if peak_dir > out + (1 << 20):
                notes.append(f"{tag} {c['format']}: output folder peaked at {peak_dir:,} bytes "
                             f"for a {out:,}-byte output (temporary files?)")
            for w in ok[0]["report"].get("warnings") or []:
                warned.setdefault(w, []).append(f"{tag} {c['format']}")
    notes += [f"bitpack warning ({', '.join(where)}): {w}" for w, where in warned.items()]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    legend = (f"best of {repeat} (med = median). wall = child process spawn to exit; convert() = bitpack's "
              "report seconds; cpu s = user + sys CPU seconds of the child (sys in brackets); peak RSS = ru_maxrss (includes resident pages of the memory-mapped input); "
              "peak anon = sampled RssAnon; read MB/s = input bytes / best wall; write s = writing the "
              "output's size of zeros + fsync; I/O floor = read input + write s")
    lines = [legend, fmt(head), "-" * len(fmt(head)), *map(fmt, rows)]
    if notes:
        lines += ["", "notes:", *("  - " + n for n in notes)]
    return "\n".join(lines)


def targets(results: list[dict]) -> str:
    lines = ["design targets and anchors, side by side:",
             f"  {'model':<6} {'format':<6} {'bitpack wall':>12} {'peak RSS':>9} {'peak anon':>9}   target / anchor"]
    for m in results:
        for c in m["conversions"]:
            key = (m["shape"], c["format"])
            t = TARGETS.get(key, {})
            ok = [r for r in c["runs"] if "error" not in r]
            if ok:
                wall = min(r["wall_s"] for r in ok)
                rss = max(r["maxrss_bytes"] for r in ok) / GB
                anon = max(r["peak_rss_anon_bytes"] for r in ok) / GB
                got = f"{wall:>11.2f}s {rss:>7.2f}GB {anon:>7.2f}GB"
            else:
                got = f"{'FAILED':>12} {'':>9} {'':>9}"
            verdict = []
            if ok and "seconds" in t:
                verdict.append(f"<= {t['seconds']} s: {'MET' if wall <= t['seconds'] else 'not met'}")
            if ok and "peak_gb" in t:
                verdict.append(f"<= {t['peak_gb']} GB: RSS {'MET' if rss <= t['peak_gb'] else 'not met'}, "
                               f"anon {'MET' if anon <= t['peak_gb'] else 'not met'}")
            measured = [a["wall_s"] for a in c.get("anchor_runs", []) if "error" not in a]
            if ok and measured:
                verdict.append(f"llama.cpp's converter in this run: {min(measured):.2f} s wall, bitpack "
                               f"{min(measured) / wall:.1f}x faster (wall to wall, start-up included)")
            lt = m["largest_tensor"]["bytes"] / GB
            target = "; ".join(verdict) or "no target"
            lines.append(f"  {m['shape'] or '-'!s:<6} {c['format']:<6} {got}   {target}; "
                         f"anchor {t.get('anchor', 'none')}; 2x largest tensor = {2 * lt:.2f} GB")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=make_synthetic.DEFAULT_DIR,
                    help=f"folder of the synthetic checkpoints and the outputs (default {make_synthetic.DEFAULT_DIR})")
    ap.add_argument("--shape", default="2b4t", help="comma list of 2b4t, large (default 2b4t)")
    ap.add_argument("--layers", type=int, help="use the checkpoint make_synthetic.py wrote with --layers N")
    ap.add_argument("--model", type=Path, action="append", help="an HF model folder instead of --shape (repeatable)")
    ap.add_argument("--formats", help="comma list (default 2b4t: i2_s,tl2,tq1_0; large: tq2_0,i2_s,tq1_0,tl2)")
    ap.add_argument("--repeat", type=int, default=1, help="conversions per format (default 1)")
    ap.add_argument("--make", action="store_true", help="generate missing synthetic checkpoints first")
    ap.add_argument("--out-dir", type=Path, help="where outputs go (default DIR/out)")
    ap.add_argument("--allow-scale-rounding", action="store_true",
                    help="pass allow_scale_rounding=True for tq1_0/tq2_0 (always on for the 2b4t shape)")
    ap.add_argument("--no-receipt", action="store_true",
                    help="convert without writing the receipt (no input/output hashing), to measure its cost")
    ap.add_argument("--keep-outputs", action="store_true", help="keep the last output of each format")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    ap.add_argument("--llama-cpp", type=Path,
                    help="a llama.cpp source tree (its convert_hf_to_gguf.py, e.g. vendor/llama.cpp of the "
                         "llama-cpp-python sdist): run it on tq1_0/tq2_0 beside each bitpack run")
    args = ap.parse_args()
    os.environ["BITPACK_BENCH_RECEIPT"] = "0" if args.no_receipt else "1"  # read by the child
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    compile_package()

    if args.model:
        todo = [(p.resolve(), None) for p in args.model]
    else:
        todo = []
        for shape in args.shape.split(","):
            if shape not in make_synthetic.SHAPES:
                ap.error(f"unknown shape {shape!r} (choose from {', '.join(make_synthetic.SHAPES)})")
            src = make_synthetic.model_dir(args.dir, shape, args.layers)
            if not (src / "model.safetensors").exists():
                if not args.make:
                    ap.error(f"{src} has no model.safetensors; run: python benchmarks/make_synthetic.py "
                             f"--shape {shape} --dir {args.dir}" + (f" --layers {args.layers}" if args.layers else "")
                             + " (or pass --make)")
                r = make_synthetic.make(shape, args.dir, args.layers)
                print(f"generated {r['dir']} ({r['bytes']:,} bytes) in {r['seconds']:.1f} s")
            todo.append((src, shape))
    out_base = args.out_dir or args.dir / "out"
    out_base.mkdir(parents=True, exist_ok=True)

    info = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    disk = shutil.disk_usage(out_base)
    print(f"outputs in {out_base} ({disk.free / GB:.1f} GB free); load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    results = []
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    for src, shape in todo:
        formats = args.formats.split(",") if args.formats else DEFAULT_FORMATS[shape]
        results.append(bench_model(src, shape, formats, args.repeat, out_base, args.keep_outputs,
                                   args.allow_scale_rounding, args.llama_cpp))
    load_end = os.getloadavg()

    print()
    print(tables(results, args.repeat))
    print()
    print(targets(results))
    print(f"\nload average (1/5/15 min) at start {' '.join(f'{x:.2f}' for x in load_start)}, at end "
          f"{' '.join(f'{x:.2f}' for x in load_end)} on {info['nproc']} cores"
          + ("  -- the machine was busy: timings are inflated" if max(load_start[0], load_end[0]) > 1.5 else ""))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {"date": started, "machine": info, "load_avg_start": load_start, "load_avg_end": load_end,
           "config": {"repeat": args.repeat, "chunk_bytes": CHUNK, "out_dir": str(out_base),
                      "targets": {f"{k[0]}/{k[1]}": v for k, v in TARGETS.items()}},
           "models": results}
    args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
