"""Byte-level fuzzing of the containers and codecs: mutated GGUF and safetensors files, and
random buffers for every codec's decode. Seeded from bitpack's own outputs of the fixtures.

A case passes when it reads, or is refused with one BitpackError line; anything else (another
exception, a multi-line message, more than SLOW seconds) is a crash. ``campaign`` drives a run;
tests/test_fuzz_bytes.py runs a short one in the suite and fuzz/run.py a long one.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from fuzz_models import MODELS, Result, run_case

from bitpack.codecs import codec_class, get_codec, list_codecs
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.safetensors_read import SafetensorsFile
from bitpack.pipelines.convert import ConvertOptions, convert
from bitpack.pipelines.inspect import inspect
from bitpack.pipelines.open import open_model

TARGETS = ("gguf", "safetensors", "decode", "stack")
SEED_GGUF = (("b158-packed", "i2_s"), ("bitnet-f32-sharded", "tq2_0"), ("llama-packed", "q2_0"),
             ("b158-packed", "iq2_bn"), ("b158-packed", "tl2"))
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1)


def seed_files(workdir: Path) -> dict[str, list[bytes]]:
    """bitpack's GGUF outputs of the fixtures, and the fixtures' safetensors files, as bytes."""
    gguf = []
    for source, codec in SEED_GGUF:
        out = workdir / f"{source}-{codec}.gguf"
        options = {"scale_convention": "divide", "allow_scale_rounding": True} if source == "llama-packed" else {}
        convert(MODELS / source, codec, ConvertOptions(output=out, receipt=False, **options))
        gguf.append(out.read_bytes())
    safetensors = [p.read_bytes() for p in sorted(MODELS.glob("*/*.safetensors")) if p.stat().st_size < 4 << 20]
    stack = workdir / "stack.gguf"  # a BitStack stack in one GGUF file: header, tables, blocks
    convert(MODELS / "llama-f16", "bitstack", ConvertOptions(output=stack, receipt=False, params={"blocks": 2}))
    return {"gguf": gguf, "safetensors": safetensors, "stack": [stack.read_bytes()]}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few structure-blind edits: flipped bits, interesting integers over header fields,
    truncation, a repeated or deleted chunk. Headers are hit most: that is where the counts,
    lengths and offsets live."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op = rng.random()
        at = rng.randrange(min(len(buf), 4096)) if rng.random() < 0.8 else rng.randrange(len(buf))
        if op < 0.35:
            buf[at] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            width = rng.choice((1, 2, 4, 8))
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            buf[at:at + width] = value.to_bytes(width, "little")
        elif op < 0.8:
            del buf[rng.randrange(len(buf)):]
        elif op < 0.9:
            n = rng.randint(1, 64)
            buf[at:at] = buf[at:at + n]
        else:
            del buf[at:at + rng.randint(1, 64)]
    return bytes(buf)


def read_gguf(path: Path) -> None:
    """Open, then read and decode every tensor the way inspect and convert do."""
    with GGUFFile(path) as f:
        for t in f.tensors:
            if t.nbytes is None:
                continue
            raw = f.raw(t)
            codec = f.codec_name(t)
            if codec is not None and codec_class(codec).container == "gguf":
                rows = (int(np.prod(t.shape[:-1])), t.shape[-1])
                if codec_class(codec).tiled:
                    continue  # tiles come from metadata; read_gguf's model path checks them
                get_codec(codec).decode(raw, rows)


def read_stack(path: Path) -> None:
    """What inspect and verify read of a stack: its header and budget table, then one block of
    every matrix reconstructed."""
    inspect(path)
    model = open_model(path, blocks=1, progress=False)
    for e in model.entries[:4]:
        e.load()


def read_safetensors(path: Path) -> None:
    f = SafetensorsFile(path)
    for name in f.names():
        f.array(name)


READERS = {"gguf": read_gguf, "safetensors": read_safetensors, "stack": read_stack}


def decode_case(rng: random.Random) -> Callable[[], None]:
    """A random buffer for a random codec: the right length or a little off, any bytes."""
    names = [n for n in list_codecs() if not codec_class(n).lossy]
    name = rng.choice(names)
    cls = codec_class(name)
    params = {}
    if name == "i2_s":
        params = {"layout": rng.choice(("x86", "x86_1x4", "arm"))}
    m = rng.choice((1, 2, 4, 8, 32, 64))
    k = rng.choice((1, 32, 64, 128, 256, 384, 512, 960))
    codec = get_codec(name, **params)

    def run() -> None:
        try:
            n = codec.nbytes((m, k))
            valid = bytes(codec.encode(np.asarray([rng.choice((-1, 1)) for _ in range(m * k)], np.int8)
                                       .reshape(m, k), np.float32(0.5)))
        except Exception:  # noqa: BLE001 -- a refused shape is tried as is
            n, valid = rng.randint(0, 4096), b""
        if valid and rng.random() < 0.5:  # a real encoding with a few bytes changed
            buf = mutate(valid, rng) if rng.random() < 0.5 else valid
        else:
            n = max(0, n + rng.choice((0, 0, 0, -1, 1, -32, 32)))
            buf = bytes(rng.getrandbits(8) for _ in range(min(n, 1 << 16))) + bytes(max(0, n - (1 << 16)))
        if cls.container == "safetensors":
            codec.decode(buf, (m, k), np.float32(rng.choice((0.5, 1.0, float("nan"), -1.0))))
        else:
            codec.decode(buf, (m, k))

    return run


def campaign(target: str, cases: int, seed: int, save: Path | None = None, report=None) -> dict[str, Any]:
    counts = {"ok": 0, "refused": 0, "crash": 0}
    crashes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"bitpack-fuzz-{target}-") as tmp:
        workdir = Path(tmp)
        seeds = seed_files(workdir) if target != "decode" else {}
        case_path = workdir / ("case.safetensors" if target == "safetensors" else "case.gguf")
        for i in range(cases):
            rng = random.Random(f"{seed}-{target}-{i}")
            if target == "decode":
                run = decode_case(rng)
                result: Result = run_case(lambda _p, run=run: run(), case_path)
            else:
                case_path.write_bytes(mutate(rng.choice(seeds[target]), rng))
                result = run_case(READERS[target], case_path)
            counts[result.kind] += 1
            if result.kind == "crash":
                crashes.append({"case": i, "detail": result.detail})
                if save is not None and target != "decode":
                    dest = save / f"{target}-{seed}-{i}"
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(case_path, dest / case_path.name)
                    (dest / "CRASH.txt").write_text(result.detail.splitlines()[0] + "\n")
            if report and (i + 1) % 5000 == 0:
                report(f"{target}: {i + 1} cases, {counts}")
    return {"target": target, "seed": seed, "cases": cases, **counts, "crashes": crashes}

