#!/usr/bin/env bash
# Release gate: convert a checkpoint, prove the output equals the source, keep the evidence.
#
#   examples/release-gate.sh SRC FORMAT OUT
#
# SRC is anything `bitpack convert` reads (a model folder, a .gguf, or a Hub repo id
# org/name@revision). The job fails when bitpack does:
#   exit 1  the output differs from the source (`--verify`); the output is kept for inspection
#   exit 2  bad input: unreadable or hostile files, degenerate (all-zero) projections,
#           shapes the format cannot hold, scales it cannot hold exactly
# On success OUT, OUT.receipt.json (sha256 of every input and of the output, the verify
# report) and OUT.inspect.json are the artefacts to publish.
set -euo pipefail

if [ "$#" -ne 3 ]; then
  echo "usage: $0 SRC FORMAT OUT" >&2
  exit 2
fi
src=$1 format=$2 out=$3

bitpack convert "$src" --to "$format" -o "$out" --overwrite --verify --json > "$out.convert.json"
bitpack inspect "$out" --json > "$out.inspect.json"

# Belt and braces: the gate also reads the stable report keys (README, "Release gate").
python3 - "$out.convert.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
verify = report["verify"]
if not (verify and verify["identical"]):
    sys.exit(f"release gate: {report['output']} is not identical to its source: {verify}")
receipt = json.load(open(report["receipt"]))
print(f"release gate passed: {report['output']} sha256 {receipt['output']['sha256']}, "
      f"{len(receipt['inputs'])} inputs hashed, bitpack {receipt['bitpack_version']}")
PY
