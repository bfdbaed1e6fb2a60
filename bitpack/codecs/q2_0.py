"""``q2_0``: mainline llama.cpp Q2_0, GGML type 42, group 64 (formats/q2_0.md;
spec/formats-2026.md §2).

An 18-byte block is the f16 scale d (first, unlike TQ2_0), then 16 bytes of 2-bit codes
c = t + 1, four consecutive weights per byte with the first in the lowest bit pair.
"""

from __future__ import annotations

from ._group import TwoBitGroupCodec


class Q2_0(TwoBitGroupCodec):  # noqa: N801 - named after the GGML type
    name = "q2_0"
    spec = "formats/q2_0.md"
    runtime = "llama.cpp (mainline, from 2026-07), PrismML fork from prism-v7"
    constraints = "K % 64 == 0"
    bits_text = "2.25"
    group_size = 64
    block_bytes = 18
    type_ids = {"mainline": 42, "prism": 42}
    file_types = {"mainline": 41, "prism": 41}
