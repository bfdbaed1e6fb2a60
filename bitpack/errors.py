"""Exceptions bitpack raises for bad input.

Every error a user can cause derives from :class:`BitpackError`; the command line turns
it into one line on stderr and exit code 2. Anything else escaping is a bug.
"""


class Terminated(BaseException):
    """SIGTERM (kill, timeout, CI cancellation), raised in the main thread where Ctrl-C would
    be, so every writer's cleanup runs: a killed conversion leaves no temporary behind. A
    BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it."""


class BitpackError(Exception):
    """Bad input, unsupported shape or usage error (exit code 2). The message is always one
    line: a name read from a hostile file (a GGUF key, a tensor name) may hold newlines or
    other control characters, which are shown escaped, and a runaway one is cut."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


MAX_MESSAGE = 2000  # characters; a real message is far shorter, a garbage key can be megabytes


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\n``, ``\x1b``) and cut at MAX_MESSAGE."""
    if text.isprintable() and len(text) <= MAX_MESSAGE:
        return text
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:MAX_MESSAGE])
    return shown + (f"... ({len(text) - MAX_MESSAGE} more characters)" if len(text) > MAX_MESSAGE else "")


class UnknownCodecError(BitpackError, ValueError):
    """A codec name or parameter that bitpack does not know."""


class ShapeError(BitpackError, ValueError):
    """A tensor shape that a codec cannot encode; the message names the rule."""


class CodecError(BitpackError, ValueError):
    """Input values a codec refuses (codes outside {-1, 0, +1}, a bad scale)."""


class ScaleError(CodecError):
    """A scale the target cannot hold exactly (and rounding was not allowed)."""


class CorruptDataError(CodecError):
    """Encoded bytes that no encoder produces: wrong length, invalid codes."""


class ContainerError(BitpackError):
    """A malformed, truncated or inconsistent file container (safetensors, GGUF, model directory)."""


class DialectError(ContainerError):
    """A GGUF file whose producer dialect cannot be decided (spec/gguf.md §3.2); pass one."""
