"""The ``bitpack`` command line: parses, calls the library, renders. No logic of its own.

Exit codes (DESIGN.md): 0 success, 1 a verification found a difference, 2 bad input or usage.
Every BitpackError and every usage error becomes one line on stderr (a usage error adds the usage
and a pointer to --help); anything else is a bug and shows a traceback. A bare ``bitpack`` is a
usage error too: the help goes to stderr and the exit code is 2, so a script that runs
``bitpack $EMPTY`` fails instead of passing.

The package: ``root`` (the Typer app), ``commands`` (one function per command), ``options``
(choices from the tables, option parsing), ``render`` (tables, JSON, progress bar).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Iterator, Optional

import typer

from ..errors import BitpackError, Terminated
from . import commands, render  # noqa: F401 - importing commands registers them on app
from .root import app

# typer >= 0.26 vendors its own click (typer._click) and raises that copy's exceptions, not the
# standalone click package's; older typer re-exports click's. typer.BadParameter is defined in
# whichever exceptions module typer raises from, so its module gives the right classes either way.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
UsageError = _click_exceptions.UsageError
ClickException = _click_exceptions.ClickException

__all__ = ["app", "main"]


def _usage_error(err: "UsageError") -> int:
    """click's message on one line, then the usage and where to find help (click puts them first)."""
    render.error(err.format_message())
    if err.ctx is not None:
        render.say(render.stderr, err.ctx.get_usage())
        render.say(render.stderr, f"Try '{err.ctx.command_path} {err.ctx.help_option_names[0]}' for help.")
    return err.exit_code


@contextlib.contextmanager
def _terminate_like_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script and ``python -m bitpack``: run the command line, return the exit code.
    ``argv`` defaults to sys.argv[1:]; tests pass it to run the command line in-process."""
    render.reset_consoles()
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not args:
        # A bare `bitpack` is a usage error whatever click version decides (it changed in 8.2).
        command = typer.main.get_command(app)
        with command.make_context("bitpack", ["--help"], resilient_parsing=True) as ctx:
            render.say(render.stderr, command.get_help(ctx))
        return 2
    try:
        with _terminate_like_interrupt():
            # typer.Exit raised by a command (and --help, --version) comes back as its code
            code = app(args=args, prog_name="bitpack", standalone_mode=False)
    except Terminated:
        render.say(render.stderr, "bitpack: terminated")
        return 143
    except BitpackError as err:
        render.error(str(err))
        return err.exit_code
    except UsageError as err:
        return _usage_error(err)
    except ClickException as err:  # e.g. a file argument click could not open
        render.error(err.format_message())
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        render.say(render.stderr, "bitpack: interrupted")
        return 130
    except typer.Exit as done:
        return done.exit_code
    if code == 130:  # typer turns Ctrl-C inside a command into Exit(130) before we see it
        render.say(render.stderr, "bitpack: interrupted")
    return code if isinstance(code, int) else 0
