"""Long byte-level fuzz run of the containers and codecs (tests/fuzz_bytes.py).

    PYTHONPATH=. python fuzz/run_bytes.py --target gguf --cases 100000 --seed 11

Targets: ``gguf`` (mutated GGUF outputs of the fixtures, opened and every tensor decoded),
``safetensors`` (mutated fixture safetensors files, opened and every tensor read), ``decode``
(every codec's decode on random or damaged buffers). Prints progress every 5,000 cases and a
JSON summary; a crashing input is saved under fixtures/fuzz/<target>-<seed>-<case>/ to become a
regression test. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_bytes import TARGETS, campaign  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--save", type=Path, default=ROOT / "fixtures" / "fuzz")
    args = parser.parse_args()
    result = campaign(args.target, args.cases, args.seed, save=args.save,
                      report=lambda line: print(line, file=sys.stderr, flush=True))
    crashes = result.pop("crashes")
    print(json.dumps({**result, "crash_samples": [c["detail"][:300] for c in crashes[:10]]}, indent=1))
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
