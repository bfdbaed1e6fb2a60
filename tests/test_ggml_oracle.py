"""bitpack's group-scale and TQ codecs against ggml's own C reference, byte for byte.

ggml's ``libggml-base.so`` (shipped in llama-cpp-python's ``lib/`` folder; mainline
llama.cpp) exports the reference quantizers and dequantizers (ggml/src/ggml-quants.h):

    void quantize_row_<type>_ref(const float * x, block_<type> * y, int64_t k);
    void dequantize_row_<type>(const block_<type> * x, float * y, int64_t k);

For random ternary (Q1_0: binary) codes times f16 group scales, with all-zero groups, the
quantizer's bytes must equal ``codec.encode(codes, scales)``, and the dequantizer's floats
must equal codes x scale -- the canonical tensor that ``codec.decode`` returns. Skipped on
a machine without llama-cpp-python, a failure under CI (tests/oracles.py). BITPACK_LIBGGML_BASE
names another libggml-base.so to check instead.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest
from oracles import require

from bitpack.codecs import get_codec

pytestmark = pytest.mark.oracle

# codec -> (ggml type name, group of one scale, shapes)
CASES = {
    "q2_0": ("q2_0", 64, [(1, 64), (7, 960), (32, 4096)]),
    "q1_0": ("q1_0", 128, [(1, 128), (5, 1024), (32, 4096)]),
    "tq2_0": ("tq2_0", 256, [(1, 256), (5, 1280), (32, 4096)]),
    "tq1_0": ("tq1_0", 256, [(1, 256), (5, 1280), (32, 4096)]),
}
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def ggml() -> ctypes.CDLL:
    if os.environ.get("BITPACK_LIBGGML_BASE"):  # another build of ggml, e.g. a fork's
        path = Path(os.environ["BITPACK_LIBGGML_BASE"])
    else:
        llama_cpp = require("llama_cpp")
        path = Path(llama_cpp.__file__).resolve().parent / "lib" / "libggml-base.so"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: llama-cpp-python was installed without its ggml libraries")
        pytest.skip(f"{path} is missing")
    lib = ctypes.CDLL(str(path))
    for name, *_ in CASES.values():
        for fn in (f"quantize_row_{name}_ref", f"dequantize_row_{name}"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            getattr(lib, fn).restype = None
    return lib


def canonical(codec: str, shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes and f16 group scales; about a quarter of the groups are all zero (scale 0)."""
    _, g, _ = CASES[codec]
    m, k = shape
    rng = np.random.default_rng(seed)
    if codec == "q1_0":
        t = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    else:
        t = rng.integers(-1, 2, size=shape, dtype=np.int8)
    scales = np.exp2(rng.uniform(-9, -1, size=(m, k // g))).astype(np.float16).astype(np.float32)
    zero = rng.random((m, k // g)) < 0.25
    if zero.size > 1:
        zero.reshape(-1)[-1] = True
    t.reshape(m, -1, g)[zero] = 0
    scales[zero] = 0
    return t, scales


def upstream_quantize(lib, name: str, x: np.ndarray, nbytes: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(nbytes, dtype=np.uint8)
    getattr(lib, f"quantize_row_{name}_ref")(x.ctypes.data, out.ctypes.data, x.size)
    return out


def upstream_dequantize(lib, name: str, raw: np.ndarray, shape) -> np.ndarray:
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    out = np.empty(shape, dtype=np.float32)
    getattr(lib, f"dequantize_row_{name}")(raw.ctypes.data, out.ctypes.data, out.size)
    return out


def values(t: np.ndarray, scales, g: int) -> np.ndarray:
    """codes x scale in float32: one scale, or one per group of g along each row."""
    s = np.asarray(scales, dtype=np.float32)
    if s.ndim == 0:
        return t.astype(np.float32) * s
    m, k = t.shape
    return (t.reshape(m, -1, g).astype(np.float32) * s.reshape(m, -1, 1)).reshape(m, k)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("codec_name", list(CASES))
def test_quantizer_bytes(ggml, codec_name, seed):
    name, g, shapes = CASES[codec_name]
    codec = get_codec(codec_name)
    for shape in shapes:
        t, scales = canonical(codec_name, shape, seed)
        want = upstream_quantize(ggml, name, values(t, scales, g), codec.nbytes(shape))
        got = codec.encode(t, scales)
        assert got.tobytes() == want.tobytes(), (codec_name, shape, seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("codec_name", list(CASES))
def test_dequantizer_values(ggml, codec_name, seed):
    name, g, shapes = CASES[codec_name]
    codec = get_codec(codec_name)
    for shape in shapes:
        t, scales = canonical(codec_name, shape, seed)
        raw = codec.encode(t, scales)
        want = upstream_dequantize(ggml, name, raw, shape)
        codes, got_scales = codec.decode(raw, shape)
        np.testing.assert_array_equal(codes, t)
        got = values(codes, got_scales, g)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{codec_name} {shape}")


@pytest.mark.parametrize("codec_name", ["q2_0", "q1_0"])
def test_uniform_scale_and_all_zero_tensor(ggml, codec_name):
    """One tensor scale (the most common input), and an all-zero tensor (d = 0 everywhere)."""
    name, g, _ = CASES[codec_name]
    codec = get_codec(codec_name)
    shape = (4, 512)
    t, _ = canonical(codec_name, shape, 7)
    for codes in (t, np.zeros(shape, dtype=np.int8)):
        want = upstream_quantize(ggml, name, codes.astype(np.float32) * np.float32(0.75), codec.nbytes(shape))
        assert codec.encode(codes, np.float32(0.75)).tobytes() == want.tobytes()
