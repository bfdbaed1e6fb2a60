"""``i2_s``: bitnet.cpp I2_S, GGML type 36 (formats/i2_s.md).

One type id, three byte layouts chosen when bitnet.cpp was compiled (formats/i2_s.md,
"Layouts"); nothing in a file records which. The ``layout`` parameter names it:

* ``x86`` (the default, recorded as no parameter): 128-element blocks of the flattened
  tensor become 32 bytes; byte p of a block holds elements p, p+32, p+64, p+96, the first
  in the most significant bit pair. Every published file; x86 builds with ACT_PARALLEL.
* ``x86_1x4``: byte rg*K + col holds column col of rows 4rg..4rg+3, the first row in the
  most significant pair. x86 builds without ACT_PARALLEL.
* ``arm``: as ``x86`` with 64-element blocks of 16 bytes (QK_I2_S = 64). ARM NEON builds.

After the M*K/4 code bytes comes a 32-byte trailer: the f32 scale, then 28 zero bytes.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import CodecError
from ._bits import (
    codes_to_ternary,
    f32_trailer,
    lanes,
    pack_pairs,
    read_f32_trailer,
    refuse_code3,
    unpack_pair,
)
from .base import GGUFCodec, Shape, require

BLOCK = 128
_SHIFTS = (6, 4, 2, 0)  # group g of a block (or row 4rg + g) goes to bits 6-2g, 7-2g
# layout -> weights per block over the flattened tensor (None: four rows of one column)
LAYOUTS = {"x86": 128, "x86_1x4": None, "arm": 64}
DEFAULT_LAYOUT = "x86"


class I2S(GGUFCodec):
    name = "i2_s"
    spec = "formats/i2_s.md"
    bits_text = "2 + 256/(M·K)"
    runtime = "bitnet.cpp (x86 AVX2 builds), ik_llama.cpp"
    constraints = "K % 128 == 0 (M % 32 == 0 recommended); layout x86_1x4: M % 4 == 0; arm: K % 64 == 0"
    param_names = ("layout",)
    # the current fork first; ik_llama.cpp reads I2_S only to requantize it, and writes none
    type_ids = {"bitnet-cpp-2026": 36, "bitnet-cpp-2024": 36}
    # MOSTLY_I2_S: 40 in the 2024-25 fork, 41 in the 2026 rebase (formats-2026 §8.2).
    file_types = {"bitnet-cpp-2024": 40, "bitnet-cpp-2026": 41}
    zero_byte = 0x55  # four codes 1 (spec/codecs.md: "every data byte is 0x55")

    def __init__(self, layout: str | None = None) -> None:
        if layout is not None and layout not in LAYOUTS:
            raise CodecError(
                f"i2_s layout must be one of {', '.join(LAYOUTS)} (x86 is the default); got {layout!r}"
            )
        # The default layout is recorded as no parameter, so configs (and files) written
        # before layouts existed stay valid and equal.
        super().__init__(layout=None if layout == DEFAULT_LAYOUT else layout)

    @property
    def layout(self) -> str:
        return self.params.get("layout", DEFAULT_LAYOUT)

    def _check(self, m: int, k: int) -> None:
        block = LAYOUTS[self.layout]
        if block is None:  # one byte = four rows of one column (spec: asserted upstream)
            require(m % 4 == 0, self.name, (m, k), f"M = {m} is not a multiple of 4 (layout x86_1x4)")
            return
        # The kernels address row m at byte m*K/4 and read whole blocks, so a block must
        # never straddle two rows.
        require(k % block == 0, self.name, (m, k), f"K = {k} is not a multiple of {block}"
                + ("" if self.layout == DEFAULT_LAYOUT else f" (layout {self.layout})"))

    def nbytes(self, shape: Shape) -> int:
        return self.code_nbytes(shape) + 32

    @classmethod
    def type_nbytes(cls, shape: tuple[int, ...]) -> int:
        # The fork's patched ggml_nbytes: nelements / 4 + 32, whatever the shape (gguf.md §1.6)
        return math.prod(shape) // 4 + 32

    def body_row_bytes(self, k: int) -> int | None:
        # a row is K/4 bytes of whole blocks (x86, arm); x86_1x4 interleaves rows in fours
        block = LAYOUTS[self.layout]
        return k // 4 if block is not None and k % block == 0 else None

    def code_nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * k // 4

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        packed = m * k // 4
        out = np.empty(packed + 32, dtype=np.uint8)
        pack_pairs(self._planes(codes, shape), _SHIFTS, self._words(out[:packed], k))
        out[packed:] = f32_trailer(scale)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        m, k = shape
        packed = m * k // 4
        words = self._words(data[:packed], k)
        refuse_code3(words, self.name)
        if self._rows:  # x86_1x4: plane g is row 4rg + g of every group of four rows
            c = np.empty((m // 4, 4, k), dtype=np.uint8)
            planes = lanes(c)
            for g, shift in enumerate(_SHIFTS):
                unpack_pair(words, shift, planes[:, g])
        else:  # plane g of every block, as one long run, then back to block order (see _planes)
            planes = np.empty((4, *words.shape), dtype=words.dtype)
            for g, shift in enumerate(_SHIFTS):
                unpack_pair(words, shift, planes[g])
            c = np.ascontiguousarray(planes.view(f"V{LAYOUTS[self.layout] // 4}").T)
        return codes_to_ternary(c.view(np.uint8)).reshape(m, k), read_f32_trailer(data, packed, self.name)

    def _words(self, packed: np.ndarray, k: int) -> np.ndarray:
        """The code bytes as words: (M/4, K) rows for x86_1x4, else one flat run."""
        return lanes(packed.reshape(-1, k)) if self._rows else packed.view(np.uint64)

    @property
    def _rows(self) -> bool:
        return LAYOUTS[self.layout] is None

    def _planes(self, codes: np.ndarray, shape: Shape) -> list[np.ndarray]:
        """The four groups of codes whose 2-bit codes share a byte, as word arrays shaped like
        the packed bytes: rows 4rg + g (x86_1x4), or group g of every block. A block's groups
        are first gathered into long runs (as 16- or 32-byte units): shifting the strided
        (block, group, word) view directly runs NumPy loops only a few words long."""
        m, k = shape
        if self._rows:
            rows = lanes(codes.reshape(m // 4, 4, k))
            return [rows[:, g] for g in range(4)]
        width = LAYOUTS[self.layout] // 4
        runs = np.ascontiguousarray(codes.reshape(-1).view(f"V{width}").reshape(-1, 4).T)
        return [run.view(np.uint64) for run in runs]
