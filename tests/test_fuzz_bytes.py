"""A short, deterministic byte-level fuzz run in the suite (the long one: fuzz/run.py)."""

import pytest
from fuzz_bytes import TARGETS, campaign, mutate

from bitpack.errors import BitpackError, one_line


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_fuzz_run_finds_nothing(target):
    result = campaign(target, 150, seed=3)
    crashes = result.pop("crashes")
    assert not crashes, crashes[0]["detail"]
    assert result["refused"] > 0 and result["ok"] > 0  # both paths were exercised


def test_an_error_message_is_one_line_whatever_a_file_holds():
    # a GGUF key or tensor name can hold newlines and escape sequences (found by the fuzzer)
    message = str(BitpackError("the value of 'a\nb\x1b[2J' at offset 12"))
    assert "\n" not in message and "\x1b" not in message and "a\\nb\\x1b[2J" in message
    assert one_line("x" * 5000).endswith("(3000 more characters)")


def test_mutation_changes_bytes():
    import random

    data = bytes(range(256)) * 4
    assert any(mutate(data, random.Random(i)) != data for i in range(10))
