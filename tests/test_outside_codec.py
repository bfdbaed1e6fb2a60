"""A GGUF codec from an outside package, with no change anywhere in bitpack (the house issue):
registered through the ``bitpack.codecs`` entry-point group by tests/plugins/bitpack_toy, it
converts a fixture, is inspected, decodes and verifies like a built-in codec.

Each step runs in a fresh process with the plugin folder on PYTHONPATH, as a user who
installed the plugin would run bitpack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"
SOURCE = ROOT / "fixtures" / "models" / "b158-packed"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_outside_codec_converts_inspects_decodes_and_verifies(tmp_path):
    out = tmp_path / "model-toy8.gguf"
    done = run("-m", "bitpack.cli", "convert", str(SOURCE), "--to", "toy8", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["format"] == "toy8" and {t["codec"] for t in report["tensors"] if t["codec"]} == {"toy8"}

    formats = run("-m", "bitpack.cli", "formats", "--json")
    assert "toy8" in {c["name"] for c in json.loads(formats.stdout)}

    seen = json.loads(run("-m", "bitpack.cli", "inspect", str(out), "--json").stdout)
    ternary = [t for t in seen["tensors"] if t["codec"] == "toy8"]
    assert ternary and all(t["shape"] for t in ternary)
    assert seen["dialect"] == "bitnet-cpp-2026"

    # The bytes are the plugin's layout under the plugin's type id, and decode to the source's codes.
    probe = (
        "import sys, numpy as np\n"
        "from bitpack.containers.gguf_read import GGUFFile\n"
        "from bitpack.codecs import get_codec\n"
        "from bitpack import open_model\n"
        "f = GGUFFile(sys.argv[1])\n"
        "t = f.tensor('blk.0.attn_q.weight')\n"
        "codes, scale = get_codec('toy8').decode(f.raw(t), f.shape(t))\n"
        "src = next(e for e in open_model(sys.argv[2]).ternary if e.name == 'blk.0.attn_q.weight').load()\n"
        "assert t.type_id == 200 and f.type_name(t) == 'TOY8'\n"
        "assert np.array_equal(codes, src.codes) and scale == src.scale\n"
        "print('ok', int((codes != 0).sum()))\n"
    )
    decoded = run("-c", probe, str(out), str(SOURCE))
    assert decoded.returncode == 0 and decoded.stdout.startswith("ok "), decoded.stderr
    assert int(decoded.stdout.split()[1]) > 0  # real codes, not an all-zero tensor

    verified = run("-m", "bitpack.cli", "verify", str(SOURCE), str(out), "--n-tokens", "6", "--json")
    assert verified.returncode == 0, verified.stderr
    result = json.loads(verified.stdout)
    assert result["identical"] is True and result["max_abs_diff"] == 0.0


def test_plugin_is_not_seen_without_it():
    # The same process setup minus the plugin: the name is unknown, listed codecs say so.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "bitpack.cli", "convert", str(SOURCE), "--to", "toy8"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "unknown codec 'toy8'" in done.stderr
