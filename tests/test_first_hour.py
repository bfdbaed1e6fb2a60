"""A newcomer's first hour (the open issue): advice that works when followed, options that either
apply or are refused, outputs that never destroy what bitpack did not write, run that speaks text.
"""

import json
from pathlib import Path

import numpy as np
from cli_runner import bitpack

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"


def test_encode_scale_advice_is_a_params_value_that_works(tmp_path):
    src = tmp_path / "t.npz"
    np.savez(src, codes=np.ones((4, 256), np.int8), scale=np.float32(0.1))  # 0.1 is not an fp16
    refused = bitpack("encode", src, "--to", "tq2_0", "-o", tmp_path / "w")
    assert refused.returncode == 2
    assert "--params scale_mode=separate" in refused.stderr
    followed = bitpack("encode", src, "--to", "tq2_0", "--params", "scale_mode=separate", "-o", tmp_path / "w")
    assert followed.returncode == 0, followed.stderr
    sidecar = json.loads((tmp_path / "w.json").read_text())
    assert sidecar["codec"]["scale_mode"] == "separate" and sidecar["scale"] == np.float32(0.1)
