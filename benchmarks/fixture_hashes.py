"""Convert every bundled fixture to every target and record the sha256 of every output file.

A refactor must not change a byte: run this before and after and compare the two JSON files.

    python benchmarks/fixture_hashes.py --out before.json
    python benchmarks/fixture_hashes.py --out after.json --compare before.json

Outputs carry their source's path in their metadata, so both runs must use the same checkout
path and the same --work folder. Refusals are recorded with their message, so a change in
what is accepted shows up too. BitStack (lossy, slow) is converted from the smallest fixture only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from bitpack import ConvertOptions, convert
from bitpack.codecs import codec_class, list_codecs
from bitpack.errors import BitpackError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
BITSTACK_FROM = ("llama-f16",)
OPTIONS = {"llama-packed": {"scale_convention": "divide"}}  # its config.json is ambiguous on purpose
CHAIN_FROM = ("bitnet-f32-sharded", "b158-packed")  # their GGUF outputs are converted again


def digest(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def convert_all(src: Path, work: Path, results: dict[str, object]) -> list[Path]:
    """Every target from ``src``; returns the GGUF outputs written."""
    written = []
    for name in list_codecs():
        cls = codec_class(name)
        if cls.lossy and src.name not in BITSTACK_FROM:
            continue
        out = work / f"{src.name}-{name}{'.gguf' if cls.container == 'gguf' else ''}"
        key = f"{src.name} -> {name}"
        try:
            convert(src, name, ConvertOptions(output=out, overwrite=True, receipt=False,
                                              **OPTIONS.get(src.name, {})))
            results[key] = digest(out)
            if cls.container == "gguf" and not cls.lossy:
                written.append(out)
        except BitpackError as err:
            results[key] = f"refused: {err}"
        print(key, "ok" if isinstance(results[key], dict) else "refused", file=sys.stderr)
    return written


def run(work: Path) -> dict[str, object]:
    results: dict[str, object] = {}
    for src in sorted(p for p in MODELS.iterdir() if p.is_dir()):
        ggufs = convert_all(src, work, results)
        if src.name in CHAIN_FROM:
            chained = work / "chained"
            chained.mkdir(exist_ok=True)
            for gguf in ggufs:
                convert_all(gguf, chained, results)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bitpack-fixture-hashes"))
    ap.add_argument("--compare", type=Path, help="an earlier --out file: report every difference")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    results = run(args.work)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if not args.compare:
        return 0
    before = json.loads(args.compare.read_text())
    diffs = [k for k in sorted(set(before) & set(results)) if before[k] != results[k]]
    for k in diffs:
        print(f"DIFFERS {k}:\n  before {before[k]}\n  after  {results[k]}")
    new, gone = sorted(set(results) - set(before)), sorted(set(before) - set(results))
    print(f"{len(results)} conversions, {len(diffs)} differ; {len(new)} new (codecs added), {len(gone)} gone"
          + (f": {', '.join(gone)}" if gone else ""))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
