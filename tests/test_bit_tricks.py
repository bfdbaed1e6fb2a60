"""Exhaustive checks of the word-level tricks the codecs use for speed.

The codecs test several bytes at once on uint64/uint32/uint16 views; these tests pin that
the wide-word answers equal the plain per-byte rule for every byte value, at every
position, for every row width (which decides the word width).
"""

import numpy as np
import pytest

from bitpack.codecs import CorruptDataError
from bitpack.codecs._bits import find_code3, lanes
from bitpack.codecs.tl1 import unpack_pair_bytes
from bitpack.codecs.tq1_0 import ENCODE_V, VALID, VALID_QH

WIDTHS = [1, 2, 3, 4, 6, 8, 12, 16, 24]


@pytest.mark.parametrize("width", WIDTHS)
def test_tl1_nibble_check_matches_per_byte_rule(width):
    for value in range(256):
        for pos in range(width):
            b = np.full((2, width), 0x44, dtype=np.uint8)  # 0x44 = two zero pairs
            b[1, pos] = value
            valid = (value >> 4) <= 8 and (value & 15) <= 8
            if valid:
                unpack_pair_bytes(b, "tl1")
            else:
                with pytest.raises(CorruptDataError, match="above 8"):
                    unpack_pair_bytes(b, "tl1")


@pytest.mark.parametrize("width", WIDTHS)
def test_code3_search_matches_per_byte_rule(width):
    for value in range(256):
        pos = width - 1
        b = np.full(width, 0x55, dtype=np.uint8)  # 0x55 = four zero codes
        b[pos] = value
        has3 = any((value >> s) & 3 == 3 for s in (0, 2, 4, 6))
        assert find_code3(lanes(b)) == (pos if has3 else None)


def test_tq1_0_byte_tables():
    # ceil(v * 256 / 243) is injective on 0..242, so exactly 243 bytes are valid; a
    # four-trit byte also needs its fifth trit zero, which leaves 81 = 3**4.
    assert VALID.sum() == 243
    assert VALID_QH.sum() == 81
    assert sorted(set(ENCODE_V[:243].tolist())) == sorted(np.flatnonzero(VALID).tolist())
