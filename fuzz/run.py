"""Long fuzz runs: every target of the models layer and of the containers and codecs.

    PYTHONPATH=. python fuzz/run.py --target gguf --cases 100000 --seed 11

Targets: ``hf`` (HF directories: config.json and tokenizer files mutated as JSON) and
``gguf-metadata`` (GGUF hyper-parameters and tokenizer arrays), from tests/fuzz_models.py;
``gguf`` (mutated bytes of bitpack's GGUF outputs, every tensor decoded), ``safetensors``
(mutated fixture safetensors files), ``stack`` (a mutated BitStack GGUF stack: inspected, opened
at one block, matrices reconstructed) and ``decode`` (every codec on random or damaged buffers),
from tests/fuzz_bytes.py. Prints progress and a JSON summary; a crashing input is saved under
fixtures/fuzz/<target>-<seed>-<case>/ to become a regression test. Exit status 1 on any crash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_bytes  # noqa: E402
import fuzz_models  # noqa: E402

# command-line target -> (campaign, the campaign's own name for it)
TARGETS = {"hf": (fuzz_models.campaign, "hf"), "gguf-metadata": (fuzz_models.campaign, "gguf"),
           **{t: (fuzz_bytes.campaign, t) for t in fuzz_bytes.TARGETS}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--save", type=Path, default=ROOT / "fixtures" / "fuzz")
    args = parser.parse_args()
    campaign, name = TARGETS[args.target]
    result = campaign(name, args.cases, args.seed, save=args.save,
                      report=lambda line: print(line, file=sys.stderr, flush=True))
    crashes = result.pop("crashes")
    print(json.dumps({**result, "crash_samples": [c["detail"][:300] for c in crashes[:10]]}, indent=1))
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
