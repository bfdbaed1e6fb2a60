"""Long fuzz run of the models layer (tests/fuzz_models.py): HF directories and GGUF metadata.

    PYTHONPATH=. python fuzz/run_models.py --target hf --cases 20000 --seed 7

Prints progress every 1,000 cases and a JSON summary (cases, ok, refused, crash); every crash
is saved under fixtures/fuzz/<target>-<seed>-<case>/ with CRASH.txt, to become a regression
test. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_models import campaign  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("hf", "gguf"), required=True)
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", type=Path, default=ROOT / "fixtures" / "fuzz")
    args = parser.parse_args()
    result = campaign(args.target, args.cases, args.seed, save=args.save,
                      report=lambda line: print(line, file=sys.stderr, flush=True))
    crashes = result.pop("crashes")
    print(json.dumps({**result, "crash_samples": [c["detail"][:300] for c in crashes[:10]]}, indent=1))
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
