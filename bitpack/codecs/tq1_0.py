"""``tq1_0``: llama.cpp TQ1_0, GGML type 34 (formats/tq1_0.md).

A 256-element block is 48 bytes of five trits, 4 bytes of four trits, then the f16
scale d. A byte packs v = sum(c_n * 3**(4 - n)) (trit n = 0 most significant) as
ceil(v * 256 / 243), so trit n can be read back as ((byte * 3**n) mod 256 * 3) >> 8.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptDataError
from ._tq import TQCodec

# Which elements of a block each byte region holds: (first element, bytes, trits).
# Byte m of a region holds elements first + m + n * bytes for trit n.
_REGIONS = ((0, 32, 5), (160, 16, 5), (240, 4, 4))

_V = np.arange(256)
ENCODE_V = ((_V * 256 + 242) // 243).clip(max=255).astype(np.uint8)  # v -> byte (v <= 242)
_TRITS = np.stack([((_V * 3**n) % 256 * 3) >> 8 for n in range(5)])  # (trit n, byte)
# Ternary value (trit - 1) of trit n of every byte, for decoding by table look-up.
TERNARY = (_TRITS - 1).astype(np.int8)
_DECODED_V = (_TRITS * (3 ** np.arange(4, -1, -1))[:, None]).sum(axis=0)
# A byte is valid when it re-encodes to itself; a four-trit byte also needs trit 4 = 0.
VALID = ENCODE_V[_DECODED_V] == _V
VALID_QH = VALID & (_TRITS[4] == 0)


class TQ1_0(TQCodec):  # noqa: N801 - named after the GGML type
    name = "tq1_0"
    spec = "formats/tq1_0.md"
    block_bytes = 54

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        nblocks = blocks.shape[0]
        v = np.empty((nblocks, 52), dtype=np.uint8)
        at = 0
        for first, width, trits in _REGIONS:
            region = blocks[:, first : first + width * trits].reshape(nblocks, trits, width)
            acc = v[:, at : at + width]
            acc[...] = region[:, 0]
            for n in range(1, 5):  # Horner; a missing fifth trit counts as 0
                np.multiply(acc, np.uint8(3), out=acc)
                if n < trits:
                    acc += region[:, n]
            at += width
        return ENCODE_V[v]

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        for valid, lo, hi in ((VALID, 0, 48), (VALID_QH, 48, 52)):
            ok = valid[qs[:, lo:hi]]
            if not ok.all():
                block, byte = np.argwhere(~ok)[0]
                raise CorruptDataError(
                    f"{self.name} block {block} byte {lo + byte} (0x{qs[block, lo + byte]:02X}) "
                    "is not a valid base-3 packing; no encoder writes it"
                )
        t = np.empty((qs.shape[0], 256), dtype=np.int8)
        at = 0
        for first, width, trits in _REGIONS:
            src = qs[:, at : at + width]
            dest = t[:, first : first + width * trits].reshape(-1, trits, width)
            for n in range(trits):
                dest[:, n] = TERNARY[n][src]
            at += width
        return t
