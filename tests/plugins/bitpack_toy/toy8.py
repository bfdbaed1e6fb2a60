"""``toy8``: one int8 per weight, then the f32 scale; GGML type 200 in both bitnet.cpp dialects.

Not a real layout: it exists to prove that a codec module declares everything bitpack needs.
"""

from __future__ import annotations

import numpy as np

from bitpack.codecs import GGUFCodec
from bitpack.codecs.base import Shape


class Toy8(GGUFCodec):
    name = "toy8"
    type_ids = {"bitnet-cpp-2026": 200, "bitnet-cpp-2024": 200}
    file_types = {"bitnet-cpp-2026": 200}
    spec = "tests/plugins/bitpack_toy/toy8.py"
    runtime = "none (a test codec)"
    constraints = "none"
    bits_text = "8 + 32/(M·K)"

    def nbytes(self, shape: Shape) -> int:
        m, k = self.check(shape)
        return m * k + 4

    def _encode(self, codes: np.ndarray, scale: np.float32, shape: Shape) -> np.ndarray:
        out = np.empty(self.nbytes(shape), dtype=np.uint8)
        out[:-4] = codes.reshape(-1)  # c = t + 1 in {0, 1, 2}
        out[-4:] = np.array([scale], dtype="<f4").view(np.uint8)
        return out

    def _decode(self, data: np.ndarray, shape: Shape, scale: None) -> tuple[np.ndarray, np.float32]:
        codes = data[:-4].astype(np.int8) - 1
        return codes.reshape(shape), np.frombuffer(data[-4:].tobytes(), dtype="<f4")[0]
