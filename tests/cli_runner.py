"""Run the ``bitpack`` command line in-process, as a user's process would see it.

Starting ``python -m bitpack.cli`` costs about half a second of imports per call; most CLI tests
only need what the process would print and return. ``bitpack(*args)`` goes through the same
``cli.main()`` as the console script (so error rendering and exit codes are the user's), with
stdout and stderr captured in buffers that are not terminals, like a pipe. The result has the
fields of ``subprocess.CompletedProcess`` that the tests read.

What only a real process shows keeps a subprocess test: the console script and ``python -m
bitpack`` (test_cli.py), the release-gate shell script (test_release_gate.py), and a Hub
conversion in a process started with the environment huggingface_hub reads at import (test_hub.py).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bitpack import cli


@dataclass
class Done:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def bitpack(*args: object, cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None) -> Done:
    """``bitpack ARGS...`` in this process; ``cwd`` and ``env`` (added to os.environ) apply to
    this call only."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        os.environ.update(env or {})
        stack.callback(_restore_env, saved_env)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = cli.main(argv)
        except SystemExit as exit:  # nothing in bitpack should, but a process would end just the same
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return Done(argv, code, out.getvalue(), err.getvalue())


def _restore_env(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)
