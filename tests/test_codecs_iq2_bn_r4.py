"""iq2_bn_r4: ik_llama.cpp IQ2_BN_R4, GGML type 335 (formats/iq2_bn.md, "IQ2_BN_R4")."""

import numpy as np
from codec_suite import CodecSuite, make_ternary
from hypothesis import strategies as st
from test_codecs_iq2_bn import IQ2Facts

from bitpack.codecs import get_codec


class TestIQ2_BN_R4(IQ2Facts, CodecSuite):
    name = "iq2_bn_r4"
    golden = ("iq2_bn_r4",)
    shapes = st.tuples(st.integers(1, 3).map(lambda n: 4 * n), st.integers(1, 4).map(lambda n: 64 * n))
    example_shapes = [(4, 64), (8, 192), (12, 512)]
    refused = [
        ((4, 32), "K = 32 is not a multiple of 64"),
        ((3, 64), "M = 3 is not a multiple of 4"),
        ((6, 128), "M = 6 is not a multiple of 4"),
    ]

    def scale_offsets(self, m, k):
        r = np.arange(m)
        return (r // 4) * 4 * (4 + 16 * k // 64) + 4 * (r % 4)


def test_r4_is_iq2_bn_with_rows_interleaved():
    """§5.3: byte 16l + 4k + i of block ib holds, in bits 2m, row k's code at column
    64ib + 16l + 4m + i; the four row scales come first. Same size as IQ2_BN."""
    t = make_ternary((8, 192), "random", 51)
    s = np.arange(1, 9, dtype=np.float32).reshape(8, 1) / 8
    flat = get_codec("iq2_bn").encode(t, s)
    r4 = get_codec("iq2_bn_r4").encode(t, s)
    assert flat.size == r4.size
    c = (t + 1).astype(np.uint8)
    group = r4.reshape(2, -1)
    for g in range(2):
        assert group[g, :16].view("<f4").tolist() == s[4 * g : 4 * g + 4, 0].tolist()
        blocks = group[g, 16:].reshape(3, 4, 4, 4)  # (ib, l, k, i)
        for ib, l, k, i in np.ndindex(3, 4, 4, 4):
            want = sum(int(c[4 * g + k, 64 * ib + 16 * l + 4 * m + i]) << (2 * m) for m in range(4))
            assert blocks[ib, l, k, i] == want
