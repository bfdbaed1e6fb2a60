"""How BitStack's block orders compare on a model: KL and top-1 agreement against the
uncompressed model at several budgets, for each order strategy.

    python benchmarks/bench_bitstack_orders.py                      # fixtures/models/llama-f16
    python benchmarks/bench_bitstack_orders.py --model DIR --text FILE --orders output,weight

Orders (spec/bitstack.md §4, §7): ``output`` (calibrated: reduction of each layer's output
error on calibration activations per byte), ``weight`` (weight-only: reduction of the
weight's residual norm per byte; no calibration, no activation scaling), ``uniform`` (every
matrix the same count; calibrated scaling), ``ppl`` (the reference's scoring: perplexity on
calibration windows when one matrix gets one more block; calibrated scaling).
Budgets are configurations of the stack's table half-way through a level (at a whole level
every matrix has the same count whatever the order), spread from the first level to the last.
Results go to --json (default benchmarks/results/bitstack_orders.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bitpack.pipelines.convert import ConvertOptions, convert  # noqa: E402
from bitpack.pipelines.inspect import inspect  # noqa: E402
from bitpack.pipelines.verify import verify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "fixtures" / "models" / "llama-f16")
    ap.add_argument("--text", type=Path, default=ROOT / "fixtures" / "calibration.txt")
    ap.add_argument("--orders", default="output,weight,uniform,ppl")
    ap.add_argument("--budgets", type=int, default=6, help="how many budgets (table configurations)")
    ap.add_argument("--n-samples", type=int, default=32, help="calibration windows")
    ap.add_argument("--tokens", type=int, default=128, help="positions compared by verify")
    ap.add_argument("--eval-text", type=Path, default=ROOT / "README.md",
                    help="held-out text whose first --tokens tokens verify runs (not the calibration text)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "bitstack_orders.json")
    args = ap.parse_args()

    results = {"model": str(args.model), "date": datetime.date.today().isoformat(),
               "machine": platform.processor() or platform.machine(), "orders": {}}
    from bitpack.models.text import encode_text
    from bitpack.pipelines.open import open_model

    tokens = encode_text(open_model(args.model), args.eval_text.read_text(encoding="utf-8"))[: args.tokens]
    results["eval_text"] = {"file": str(args.eval_text), "tokens": len(tokens)}
    with tempfile.TemporaryDirectory() as tmp:
        for order in args.orders.split(","):
            options = {"order": order} if order != "output" else {}
            if order != "weight":
                options.update(calibration=args.text, n_samples=args.n_samples)
            started = time.perf_counter()
            out = Path(tmp) / order
            convert(args.model, "bitstack", ConvertOptions(output=out, receipt=False, **options))
            seconds = time.perf_counter() - started
            report = inspect(out)
            table, per_level = report["budget_table"], len(report["blocks"])
            # Half-way through a level: at whole levels every order loads the same blocks.
            levels = report["niter"] - 1
            picks = [table[per_level * round(i * (levels - 1) / (args.budgets - 1)) + per_level // 2]["bytes"]
                     for i in range(args.budgets)]
            rows = []
            for budget in picks:
                r = verify(args.model, out, budget=budget, tokens=tokens)
                rows.append({"budget_bytes": budget, "config_bytes": r["config_bytes"], "kl": r["kl"],
                             "top1_agreement": r["top1_agreement"], "blocks_mean": r["blocks_per_matrix"]["mean"]})
            results["orders"][order] = {"convert_seconds": round(seconds, 2), "budgets": rows}
            print(f"{order:8s} convert {seconds:6.1f} s  " + "  ".join(
                f"{row['config_bytes'] / 2**20:.2f}MiB kl={row['kl']:.4f} top1={row['top1_agreement']:.2f}"
                for row in rows), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
