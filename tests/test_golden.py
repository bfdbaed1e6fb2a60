"""Byte compatibility with the upstream tools.

* Upstream golden files: every fixtures/upstream_golden/ternary_*.npz (made by bitnet.cpp's
  converter and gguf-py writer, and by transformers; see fixtures/upstream_golden/README.md)
  is reproduced byte for byte and decodes back to its ternary tensor and scale. They are
  copies of the project's shared/golden/ files; when shared/ is beside the repository (as in
  CI), the copies are checked against it and any further ternary_*.npz there is tested too.
* Committed fixtures (numcodecs-style backwards compatibility): fixtures/codec_golden/
  holds copies of those bytes plus TQ1_0/TQ2_0 bytes made by gguf.quants.quantize
  (fixtures/make_codec_golden.py), so bitpack's current output is checked against
  fixed bytes from the repository alone.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from codec_suite import FIXTURES_DIR, REPO_ROOT, SHARED_GOLDEN, UPSTREAM_DIR

from bitpack.codecs import get_codec

KNOWN = ["ternary_128x512.npz", "ternary_256x256.npz", "ternary_256x512.npz", "ternary_512x256.npz"]
UPSTREAM_NAMES = sorted(set(KNOWN) | {p.name for p in SHARED_GOLDEN.glob("ternary_*.npz")})


def load(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def upstream(name: str) -> dict[str, np.ndarray]:
    # the committed copy first; a name only ../shared/golden has was found by the glob above
    path = UPSTREAM_DIR / name if name in KNOWN else SHARED_GOLDEN / name
    if not path.is_file():
        pytest.fail(f"upstream golden file {path} is missing", pytrace=False)
    return load(path)


def committed(name: str) -> dict[str, np.ndarray]:
    path = FIXTURES_DIR / name
    if not path.is_file():
        pytest.fail(f"committed fixture {path} is missing; run fixtures/make_codec_golden.py", pytrace=False)
    return load(path)


def tiles(z, prefix):
    return {key: int(z[f"{prefix}_{key}"]) for key in ("BM", "BK", "bm")}


# codec, field holding its bytes, codec parameters, field holding the scale it stores
CASES = {
    "i2_s": ("i2s_bytes", lambda z: {}, "scale"),
    "tl1": ("tl1_tensor_bytes", lambda z: tiles(z, "tl1"), "scale"),
    "tl2": ("tl2_tensor_bytes", lambda z: tiles(z, "tl2"), "scale"),
    "hf_packed": ("hf_packed", lambda z: {}, None),
    "tq1_0": ("tq1_0_bytes", lambda z: {}, "tq_scale"),
    "tq2_0": ("tq2_0_bytes", lambda z: {}, "tq_scale"),
}
UPSTREAM_CODECS = ["i2_s", "tl1", "tl2", "hf_packed"]


def check_bytes(z, codec_name):
    field, params, scale_field = CASES[codec_name]
    t = z["ternary"]
    want = z[field]
    codec = get_codec(codec_name, **params(z))
    scale = z[scale_field][()] if scale_field else z["scale"][()]
    assert codec.nbytes(t.shape) == want.nbytes
    out = codec.encode(t, scale)
    if codec.container == "safetensors":
        assert out.shape == want.shape
    assert out.tobytes() == want.tobytes(), f"{codec_name}: first differing byte " + str(
        int(np.flatnonzero(out.reshape(-1) != want.reshape(-1))[0]) if out.size == want.size else "(size)"
    )
    got, got_scale = codec.decode(want.tobytes(), t.shape)
    np.testing.assert_array_equal(got, t)
    if scale_field:
        assert isinstance(got_scale, np.float32)
        assert got_scale == z[scale_field]


def test_upstream_copies_present():
    assert sorted(p.name for p in UPSTREAM_DIR.glob("ternary_*.npz")) == KNOWN


@pytest.mark.parametrize("name", sorted(p.name for p in UPSTREAM_DIR.iterdir() if p.name != "README.md"))
def test_upstream_copy_equals_shared(name):
    """The committed copies are the upstream files, byte for byte (checked where shared/ exists)."""
    if not SHARED_GOLDEN.is_dir():
        pytest.skip(f"{SHARED_GOLDEN} is absent: nothing to compare the copy with")
    assert (UPSTREAM_DIR / name).read_bytes() == (SHARED_GOLDEN / name).read_bytes()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "fixtures" / "codec_golden" / "2026").glob("*.npz")),
                         ids=lambda p: p.name)
def test_2026_copy_equals_shared(path):
    """The committed 2026 golden files are the upstream files, byte for byte (where shared/ exists)."""
    shared = SHARED_GOLDEN / "2026" / path.name
    if not shared.is_file():
        pytest.skip(f"{shared} is absent: nothing to compare the copy with")
    assert path.read_bytes() == shared.read_bytes()


@pytest.mark.parametrize("codec_name", UPSTREAM_CODECS)
@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_upstream_golden(name, codec_name):
    check_bytes(upstream(name), codec_name)


@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_upstream_golden_scales(name):
    """The converter's own scales equal the tensor's, and the TL1 payload is the data before the trailer."""
    z = upstream(name)
    assert z["tl1_scale"] == z["scale"] and z["tl2_scale"] == z["scale"]
    m, k = z["ternary"].shape
    assert z["tl1_tensor_bytes"][: m * k // 4].tobytes() == z["tl1_payload"].tobytes()


@pytest.mark.parametrize("codec_name", list(CASES))
@pytest.mark.parametrize("name", KNOWN)
def test_committed_fixture(name, codec_name):
    check_bytes(committed(name), codec_name)


def test_committed_fixtures_are_all_tested():
    assert sorted(p.name for p in FIXTURES_DIR.glob("*.npz")) == KNOWN


@pytest.mark.parametrize("name", KNOWN)
def test_committed_fixture_is_faithful(name):
    """The committed copy equals the upstream file, and its TQ bytes equal what the
    installed gguf makes today (re-running fixtures/make_codec_golden.py changes nothing)."""
    spec = importlib.util.spec_from_file_location("make_codec_golden", REPO_ROOT / "fixtures" / "make_codec_golden.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    fresh = maker.make(UPSTREAM_DIR / name)
    stored = committed(name)
    assert set(stored) == set(fresh)
    for field, value in fresh.items():
        if field == "gguf_version":
            continue
        assert stored[field].dtype == value.dtype, field
        np.testing.assert_array_equal(stored[field], value, err_msg=field)
