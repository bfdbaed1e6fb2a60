"""What TL1 and TL2 share: tile parameters, bound per shape (formats/tl1.md, formats/tl2.md)."""

from __future__ import annotations

import abc
import operator
from typing import ClassVar, Iterator

from ..errors import CodecError
from .base import GGUFCodec, Shape
from .tiles import Preset, Tiles, resolve_tiles


class TLCodec(GGUFCodec):
    """A lookup-table layout; ``BM``, ``BK``, ``bm`` default to the preset or a valid choice."""

    param_names = ("BM", "BK", "bm")
    tiled = True
    min_k: ClassVar[int] = 0  # the shortest row the layout can hold
    presets: ClassVar[list[Preset]]

    def __init__(self, BM: int | None = None, BK: int | None = None, bm: int | None = None) -> None:  # noqa: N803
        tiles = {}
        for key, value in (("BM", BM), ("BK", BK), ("bm", bm)):
            if value is None:
                continue
            try:  # numpy integers (e.g. read from an .npz) are integers too; bools are not
                tiles[key] = operator.index(value) if not isinstance(value, bool) else None
            except TypeError:
                tiles[key] = None
            if tiles[key] is None or tiles[key] <= 0:
                raise CodecError(f"{self.name} tile parameter {key} must be a positive integer; got {value!r}")
        super().__init__(**tiles)

    def tiles(self, shape: Shape) -> Tiles:
        """The tiles this codec uses for ``shape`` (raises ShapeError when none fit)."""
        m, k = (int(d) for d in shape)
        return resolve_tiles(self.name, (m, k), self.params, self.presets, self._candidates, self._problem,
                             self.min_k)

    def for_shape(self, shape: Shape) -> TLCodec:
        m, k = self.check(shape)
        return type(self)(**self.tiles((m, k)).as_dict())

    def _check(self, m: int, k: int) -> None:
        self.tiles((m, k))

    @abc.abstractmethod
    def _candidates(self, m: int, k: int) -> Iterator[Tiles]:
        """Valid-looking tilings for (m, k), preferred first."""

    @abc.abstractmethod
    def _problem(self, m: int, k: int, t: Tiles) -> str | None:
        """Why tiles ``t`` cannot encode (m, k), or None when they can."""
