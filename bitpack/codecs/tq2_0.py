"""``tq2_0``: llama.cpp TQ2_0, GGML type 35 (formats/tq2_0.md).

A 256-element block is 64 code bytes then the f16 scale d. Byte 32g + m holds elements
128g + 32n + m for n = 0..3, element n = 0 in the LEAST significant bit pair (the
reverse of I2_S's order).
"""

from __future__ import annotations

import numpy as np

from ._bits import codes_to_ternary, lanes, pack_pairs, refuse_code3, unpack_pairs
from ._tq import TQCodec

_SHIFTS = (0, 2, 4, 6)


class TQ2_0(TQCodec):  # noqa: N801 - named after the GGML type
    name = "tq2_0"
    type_ids = {"mainline": 35, "bitnet-cpp-2024": 35, "bitnet-cpp-2026": 35, "prism": 35, "prism-legacy": 35}
    file_types = {"mainline": 37}
    spec = "formats/tq2_0.md"
    bits_text = "2.0625"
    block_bytes = 66

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        groups = lanes(blocks.reshape(-1, 2, 4, 32))  # (block, half g, pair n, m as words)
        qs = np.empty((blocks.shape[0], 64), dtype=np.uint8)
        dest = lanes(qs.reshape(-1, 2, 32))
        pack_pairs([groups[:, :, n] for n in range(4)], _SHIFTS, dest)
        return qs

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        words = lanes(qs.reshape(-1, 2, 32))
        refuse_code3(words, self.name)
        c = np.empty((qs.shape[0], 2, 4, 32), dtype=np.uint8)  # (block, half g, pair n, m)
        unpack_pairs(words, _SHIFTS, lanes(c))
        return codes_to_ternary(c).reshape(-1, 256)
