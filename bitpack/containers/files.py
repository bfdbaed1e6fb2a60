"""Output files written all at once or not at all, and the checks before writing one.

Every writer in bitpack writes to ``.<name>.<random>.part`` beside its target and renames it
into place when complete, so a failed or interrupted run never leaves a partial file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import BitpackError, ContainerError


def create_temp_sibling(path: Path, *, directory: bool = False) -> Path:
    """Create ``.<name>.<random>.part`` next to ``path`` with umask-respecting permissions.

    (tempfile.mkstemp/mkdtemp would create 0600/0700 entries, which would survive the rename
    and make published model files unreadable to other users.)
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            if directory:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise ContainerError(f"cannot create {tmp} ({err.strerror or err})") from None
    raise ContainerError(f"{path.parent}: cannot create a temporary name for {path.name}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file through a temporary sibling and a rename."""
    tmp = create_temp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_file(out: Path, *, overwrite: bool, inputs: list[Path]) -> None:
    """Refuse, before any work, an output file that would replace an input or an existing
    file (without ``overwrite``), or whose folder does not exist."""
    target = out.resolve()
    for f in inputs:
        f = Path(f).resolve()
        if f == target or target in f.parents:
            raise BitpackError(f"refusing to write {out}: it would overwrite the input {f}; choose another output, "
                               "bitpack never writes over the input")
    if out.is_dir():
        raise BitpackError(f"{out} is a directory; this output is a file")
    if out.exists() and not overwrite:
        raise BitpackError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise BitpackError(f"output folder {out.parent} does not exist")
