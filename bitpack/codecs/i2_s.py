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
    type_ids = {"bitnet-cpp-2024": 36, "bitnet-cpp-2026": 36, "ik-llama": 36}
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

    def code_nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * k // 4

    def _groups(self, a: np.ndarray, shape: Shape) -> np.ndarray:
        """(unit, g, width) view of codes ``a`` whose four g go into one byte at offset
        ``unit * width + p``: 32 or 16 weights of a block, or one row of a group of four."""
        m, k = shape
        block = LAYOUTS[self.layout]
        return a.reshape(m // 4, 4, k) if block is None else a.reshape(-1, 4, block // 4)

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        m, k = shape
        packed = m * k // 4
        out = np.empty(packed + 32, dtype=np.uint8)
        groups = lanes(self._groups(codes, shape))  # (unit, group, bytes as words)
        dest = lanes(out[:packed].reshape(groups.shape[0], -1))
        pack_pairs([groups[:, g] for g in range(4)], _SHIFTS, dest)
        out[packed:] = f32_trailer(scale)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        m, k = shape
        packed = m * k // 4
        c = np.empty(m * k, dtype=np.uint8)
        groups = lanes(self._groups(c, shape))
        words = lanes(data[:packed].reshape(groups.shape[0], -1))
        refuse_code3(words, self.name)
        for g, shift in enumerate(_SHIFTS):
            unpack_pair(words, shift, groups[:, g])
        return codes_to_ternary(c).reshape(m, k), read_f32_trailer(data, packed, self.name)
