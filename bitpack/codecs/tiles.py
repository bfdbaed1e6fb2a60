"""Tile parameters of bitnet.cpp's lookup-table layouts TL1 and TL2 (formats/tl1.md §Parameters,
formats/tl2.md §Parameters).

A TL1/TL2 tensor can only be run by a bitnet.cpp build whose kernels were generated for
the same (M, K) and the same tiles, so the tiles are part of the layout. Where upstream
ships tiles for a shape, bitpack uses them so files match the kernels a default
``setup_env.py`` build generates; elsewhere it picks the first valid tiling by a fixed
rule, and explicit tiles always win.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from ..errors import ShapeError


@dataclass(frozen=True)
class Tiles:
    BM: int  # rows per tile (kernel_config.ini key "bm")
    BK: int  # columns per tile ("bk")
    bm: int  # SIMD row block ("bmm")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    model: str
    shape: tuple[int, int]
    tiles: Tiles


def _presets(model: str, rows: list[tuple[int, int, int, int, int]]) -> list[Preset]:
    return [Preset(model, (m, k), Tiles(bm_, bk, bmm)) for m, k, bm_, bk, bmm in rows]


# (M, K, BM, BK, bm) as setup_env.py's codegen call generates them (it runs after, and
# overrides, --use-pretuned, so this is what a default bitnet.cpp build contains).
TL1_PRESETS = [
    *_presets("bitnet_b1_58-large", [
        (1536, 4096, 256, 128, 32), (1536, 1536, 128, 64, 64), (4096, 1536, 256, 128, 32)]),
    *_presets("bitnet_b1_58-3B", [
        (3200, 8640, 160, 64, 32), (3200, 3200, 320, 128, 64), (8640, 3200, 320, 64, 32)]),
    *_presets("Llama3-8B-1.58-100B-tokens", [
        (14336, 4096, 256, 128, 32), (4096, 14336, 128, 64, 64),
        (1024, 4096, 256, 128, 32), (4096, 4096, 128, 64, 64)]),
]

# The large model's preset ini has bm = 64 for (4096, 1536), which codegen_tl2.py
# rejects (bm must be 32); the codegen value 256/96/32 is what gets built.
TL2_PRESETS = [
    *_presets("bitnet_b1_58-large", [
        (1536, 4096, 256, 96, 32), (1536, 1536, 128, 192, 32), (4096, 1536, 256, 96, 32)]),
    *_presets("bitnet_b1_58-3B", [
        (3200, 8640, 160, 96, 32), (3200, 3200, 320, 96, 32), (8640, 3200, 320, 96, 32)]),
    *_presets("Llama3-8B-1.58-100B-tokens", [
        (14336, 4096, 256, 96, 32), (4096, 14336, 128, 96, 32),
        (1024, 4096, 256, 96, 32), (4096, 4096, 128, 96, 32)]),
]


def preset_for(presets: list[Preset], shape: tuple[int, int]) -> Tiles | None:
    found = {p.tiles for p in presets if p.shape == tuple(shape)}
    return found.pop() if len(found) == 1 else None


def resolve_tiles(
    codec: str,
    shape: tuple[int, int],
    given: dict[str, int],
    presets: list[Preset],
    candidates: Callable[[int, int], Iterator[Tiles]],
    problem: Callable[[int, int, Tiles], str | None],
    min_k: int = 0,
) -> Tiles:
    """The tiles to use for ``shape``: explicit values, else the preset, else the first valid
    candidate. Raises ShapeError naming the rule when nothing fits."""
    m, k = shape
    if len(given) == 3:
        tiles = Tiles(**given)
        why = problem(m, k, tiles)
        if why:
            raise ShapeError(f"{codec} tiles {_fmt(tiles)} do not fit shape {shape}: {why}")
        return tiles
    preset = preset_for(presets, shape)
    options = itertools.chain([preset] if preset else [], candidates(m, k))
    first = None
    for tiles in options:
        first = first or tiles
        if all(getattr(tiles, key) == value for key, value in given.items()):
            if problem(m, k, tiles) is None:
                return tiles
    if given and first:  # explain with the caller's values filled in by the first option
        tiles = Tiles(**(first.as_dict() | given))
        raise ShapeError(f"{codec} tiles {_fmt(tiles)} do not fit shape {shape}: {problem(m, k, tiles)}")
    raise ShapeError(f"{codec} has no valid tiling for shape {shape}: {_why_none(codec, m, k, min_k)}")


def _why_none(codec: str, m: int, k: int, min_k: int) -> str:
    if m % 32:
        return f"M = {m} is not a multiple of 32"
    if k < min_k:
        return f"K = {k} is below {min_k}"
    return f"no tile width divides K = {k} (see formats/{codec}.md, Shape constraints)"


def _fmt(tiles: Tiles) -> str:
    return f"BM={tiles.BM} BK={tiles.BK} bm={tiles.bm}"


def divisors_desc(n: int, step: int, limit: int) -> list[int]:
    """Multiples of ``step`` that divide ``n``, at most ``limit``, largest first."""
    return [d for d in range(min(n, limit) // step * step, 0, -step) if n % d == 0]


def kernel_config_ini(entries: list[tuple[tuple[int, int], Tiles]]) -> str:
    """The tile table as bitnet.cpp's kernel generator reads it (include/kernel_config.ini)."""
    sections = []
    for i, ((m, k), t) in enumerate(entries):
        sections.append(f"[Kernels_{i}]\nm = {m}\nk = {k}\nbm = {t.BM}\nbk = {t.BK}\nbmm = {t.bm}\n")
    return "\n".join(sections)


def read_kernel_config(text: str) -> dict[tuple[int, int], Tiles]:
    """(M, K) -> tiles from bitnet.cpp's include/kernel_config.ini (sections with m, k, bm, bk, bmm)."""
    import configparser

    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as err:
        raise ShapeError(f"kernel_config.ini is not readable ({err})") from None
    table = {}
    for section in parser.sections():
        try:
            row = {key: int(parser[section][key]) for key in ("m", "k", "bm", "bk", "bmm")}
        except (KeyError, ValueError):
            raise ShapeError(f"kernel_config.ini section [{section}] needs integer m, k, bm, bk, bmm") from None
        table[(row["m"], row["k"])] = Tiles(row["bm"], row["bk"], row["bmm"])
    return table
