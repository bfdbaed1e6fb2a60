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
_DECODED_V = (_TRITS * (3 ** np.arange(4, -1, -1))[:, None]).sum(axis=0)
# A byte is valid when it re-encodes to itself; a four-trit byte also needs trit 4 = 0.
VALID = ENCODE_V[_DECODED_V] == _V
VALID_QH = VALID & (_TRITS[4] == 0)


def _pairwise(table: np.ndarray) -> np.ndarray:
    """A per-byte table extended to little-endian byte pairs (65536 entries), so one
    look-up on a uint16 view handles two bytes."""
    lo, hi = np.meshgrid(np.arange(256), np.arange(256))
    if table.dtype == bool:
        return (table[lo] & table[hi]).reshape(-1)
    return (table[lo].astype(np.uint16) | table[hi].astype(np.uint16) << 8).reshape(-1)


ENCODE_V2 = _pairwise(ENCODE_V)
VALID2, VALID_QH2 = _pairwise(VALID), _pairwise(VALID_QH)
# Ternary value (trit - 1) of trit n, for both bytes of a pair: the two elements are
# neighbours in the block, so the result is stored as one uint16.
TERNARY2 = [_pairwise((_TRITS[n] - 1).astype(np.int8).view(np.uint8)) for n in range(5)]


def horner(trits: np.ndarray, extra: int = 0) -> np.ndarray:
    """sum(trits[n] * 3**(len - 1 - n)) * 3**extra, byte-wise on packed words."""
    acc = trits[0].copy()
    three = acc.dtype.type(3)
    for n in range(1, len(trits)):
        acc *= three
        acc += trits[n]
    for _ in range(extra):
        acc *= three
    return acc


class TQ1_0(TQCodec):  # noqa: N801 - named after the GGML type
    name = "tq1_0"
    type_ids = {"mainline": 34, "bitnet-cpp-2024": 34, "bitnet-cpp-2026": 34, "prism": 34, "prism-legacy": 34}
    file_types = {"mainline": 36}
    spec = "formats/tq1_0.md"
    bits_text = "1.6875"
    block_bytes = 54

    def _pack_blocks(self, blocks: np.ndarray) -> np.ndarray:
        # Work on the transpose: row w of ``cols`` is code word w (8 codes) of every block,
        # so each Horner step below is one long contiguous operation. Codes are at most 2
        # and v at most 242, so no step carries across bytes.
        nblocks = blocks.shape[0]
        cols = np.ascontiguousarray(blocks.view(np.uint64).T)  # (32 words, nblocks)
        qs = np.empty((nblocks, 52), dtype=np.uint8)
        qs16 = qs.view(np.uint16)
        at = 0
        for first, width, trits in _REGIONS[:2]:  # 32- and 16-byte regions: whole words
            w = width // 8
            region = cols[first // 8 : first // 8 + w * trits].reshape(trits, w, nblocks)
            v = horner(region)  # (w, nblocks) words of v
            lut = ENCODE_V2[v.view(np.uint16).reshape(w, nblocks, 4)]
            qs16[:, at : at + 4 * w].reshape(nblocks, w, 4).transpose(1, 0, 2)[...] = lut
            at += 4 * w
        tail = cols[30:32].view(np.uint32).reshape(2, nblocks, 2).transpose(0, 2, 1)
        v = horner(tail.reshape(4, 1, nblocks), extra=1)  # four trits, fifth counts as 0
        qs16[:, at : at + 2] = ENCODE_V2[v.view(np.uint16).reshape(nblocks, 2)]
        return qs

    def _unpack_blocks(self, qs: np.ndarray) -> np.ndarray:
        # As in _pack_blocks, work on the transpose (row w = word w of every block), where
        # each look-up is one long operation; one transpose back at the end.
        nblocks = qs.shape[0]
        padded = np.zeros((nblocks, 56), dtype=np.uint8)
        padded[:, :52] = qs
        pairs = np.ascontiguousarray(padded.view(np.uint64).T).view(np.uint16).reshape(7, nblocks, 4)
        if not (VALID2[pairs[:6]].all() and VALID_QH2[pairs[6, :, :2]].all()):
            self._refuse_invalid(qs)
        words = np.empty((32, nblocks), dtype=np.uint64)  # word w of the decoded blocks
        ternary = words.view(np.uint16).reshape(32, nblocks, 4)
        for n in range(5):
            np.take(TERNARY2[n], pairs[0:4], out=ternary[4 * n : 4 * n + 4])  # elements 32n + m
            np.take(TERNARY2[n], pairs[4:6], out=ternary[20 + 2 * n : 22 + 2 * n])  # 160 + 16n + m
        tail = words[30:32].view(np.uint16).reshape(2, nblocks, 2, 2)  # elements 240 + 4n + j
        for n in range(4):
            tail[n // 2, :, n % 2] = TERNARY2[n][pairs[6, :, :2]]
        return np.ascontiguousarray(words.T).view(np.int8)

    def _refuse_invalid(self, qs: np.ndarray) -> None:
        refuse_invalid_base3(qs, self.name, 24)  # 48 bytes of five trits, then 4 of the high trits


def refuse_invalid_base3(qs: np.ndarray, codec: str, five_trit_pairs: int) -> None:
    """Refuse a block (row of ``qs``) holding a byte pair no encoder writes: the first
    ``five_trit_pairs`` uint16 pairs pack five trits a byte, the rest the high trits (TQ1_0's
    layout, which PTQ1_0 reuses at group 128). Names the block and the bytes."""
    pairs = qs.view(np.uint16)
    for valid, lo, hi in ((VALID2, 0, five_trit_pairs), (VALID_QH2, five_trit_pairs, pairs.shape[1])):
        ok = valid[pairs[:, lo:hi]]
        if not ok.all():
            block, pair = np.argwhere(~ok)[0]
            raise CorruptDataError(
                f"{codec} block {block} bytes {2 * (lo + pair)}-{2 * (lo + pair) + 1} "
                f"(0x{int(pairs[block, lo + pair]):04X}) are not a valid base-3 packing; "
                "no encoder writes them"
            )
