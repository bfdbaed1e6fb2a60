"""``pq2_0``: PrismML PQ2_0, GGML type 142, group 128 (formats/pq2_0.md;
spec/formats-2026.md §3).

A 34-byte block is the f16 scale d, then 32 bytes of 2-bit codes c = t + 1, four
consecutive weights per byte with the first in the lowest bit pair: Q2_0's layout with
128 weights. The legacy Prism "Q2_0" (id 42 in Prism releases up to prism-v5) holds the
same bytes; the dialect decides which id a file uses (``type_ids``).
"""

from __future__ import annotations

from ._group import TwoBitGroupCodec


class PQ2_0(TwoBitGroupCodec):  # noqa: N801 - named after the GGML type
    name = "pq2_0"
    spec = "formats/pq2_0.md"
    runtime = "PrismML llama.cpp fork (id 142 from q2_0-prs / prism-v7; id 42 up to prism-v5)"
    constraints = "K % 128 == 0"
    bits_text = "2.125"
    group_size = 128
    block_bytes = 34
    type_ids = {"prism": 142, "prism-legacy": 42}
    file_types = {"prism": 141, "prism-legacy": 41}
