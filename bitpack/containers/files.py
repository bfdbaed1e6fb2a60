"""Output files written all at once or not at all, and the checks before writing one.

Every writer in bitpack writes to ``.<name>.<pid>-<random>.part`` beside its target and
renames it into place when complete (:class:`StagedFile`; directories: hf_dir), so a failed
or interrupted run never leaves a partial file under the output's name. The writer's pid in
the name lets the next run that writes the same output recognise a temporary left by a run
that was killed outright (``kill -9``, a power cut) and remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from ..errors import BitpackError, ContainerError

_PART = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.part")
HASH_CHUNK = 8 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def create_temp_sibling(path: Path, *, directory: bool = False) -> Path:
    """Create ``.<name>.<pid>-<random>.part`` next to ``path`` with umask-respecting permissions,
    after removing any such temporary of ``path`` whose writer is no longer running.

    (tempfile.mkstemp/mkdtemp would create 0600/0700 entries, which would survive the rename
    and make published model files unreadable to other users.)
    """
    remove_stale(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part"
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


def remove_stale(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that are no longer running."""
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for tmp in siblings:
        found = _PART.fullmatch(tmp.name)
        if found is None or found["name"] != path.name or _alive(int(found["pid"])):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is another user's: leave its files alone
        return True
    return True


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every platform can open a directory, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StagedFile:
    """One output file, written to a temporary sibling and renamed onto ``path`` by
    :meth:`commit` after an fsync of the file (and of the folder after the rename); or
    removed by :meth:`discard`, by an exception inside ``with``, or when dropped unfinished.
    Every file writer in bitpack goes through it, so all have the same durability."""

    def __init__(self, path: Path, *, overwrite: bool = True, digest: bool = False) -> None:
        self.path, self.overwrite, self.digest = Path(path), overwrite, digest
        self.sha256: str | None = None  # with ``digest``: the committed file's
        self.tmp: Path | None = create_temp_sibling(self.path)
        try:
            self._fh: Any = self.tmp.open("r+b")
        except OSError as err:
            self.discard()
            raise ContainerError(f"cannot open {self.tmp}: {err.strerror or err}") from None

    def write(self, data: Any) -> None:
        try:
            self._fh.write(data)
        except OSError as err:  # ENOSPC, EIO, a vanished folder: nothing may stay behind
            self.discard()
            raise ContainerError(f"{self.path}: writing failed: {err.strerror or err}") from None

    @property
    def file(self) -> Any:
        """The open temporary, for writers that seek (patching a header in place)."""
        return self._fh

    def commit(self) -> None:
        if self.tmp is None:
            raise ContainerError(f"{self.path}: the output was already finished or discarded")
        try:
            self._fh.flush()
            self._fsync()
            self._fh.close()
            self._fh = None
            _publish(self.tmp, self.path, self.overwrite)
            self.tmp = None
        except BaseException:
            self.discard()
            raise

    def _fsync(self) -> None:
        """fsync; with ``digest``, the file is hashed meanwhile: the fsync waits for the disk
        with the cores idle (about 2 s for a 1.2 GB GGUF here), and a receipt reading the
        finished file again afterwards took as long again."""
        if not self.digest:
            os.fsync(self._fh.fileno())
            return
        with ThreadPoolExecutor(1, thread_name_prefix="bitpack-sha256") as pool:
            digest = pool.submit(sha256_file, self.tmp)
            os.fsync(self._fh.fileno())
            self.sha256 = digest.result()

    def discard(self) -> None:
        """Close and delete the temporary; safe to call repeatedly."""
        if getattr(self, "_fh", None) is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if getattr(self, "tmp", None) is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and self.tmp is not None:
            self.commit()
        else:
            self.discard()

    def __del__(self) -> None:  # a writer dropped without commit() must not leave a .part file
        try:
            self.discard()
        except Exception:  # noqa: BLE001, S110 - a finalizer must never raise
            pass


@contextlib.contextmanager
def staged_path(path: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary sibling path for a writer that needs a path of its own (it may be written,
    closed and reopened); published as ``path`` like a :class:`StagedFile` when the block ends,
    removed if it raises."""
    tmp = create_temp_sibling(path)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        _publish(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished temporary onto ``path`` (durably), never over a file that appeared
    meanwhile unless overwriting was asked for."""
    try:
        if not overwrite and path.exists():
            raise ContainerError(f"{path} appeared while writing; not replacing it")
        os.replace(tmp, path)
    except OSError as err:
        raise ContainerError(f"{path}: cannot finish the file ({err.strerror or err})") from None
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file all at once or not at all."""
    with StagedFile(path) as out:
        out.write(data)


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
