"""Conversion receipts: ``<output>.receipt.json``, what was converted from what, by what.

A release pipeline keeps the receipt next to the artefact: it names the bitpack version,
the source (a path, or a Hub repo with the exact commit), the sha256 of every input file
read, the target format and its configuration, every tensor's codec and bits per weight,
the output's sha256 and the verification result. Keys are stable (README, "Receipts").

Inputs are hashed on a background thread while the conversion runs (hashlib releases the
GIL, and the files are in the page cache the conversion reads anyway). sha256 runs at about
1 GB/s on one core here, so a 4.8 GB checkpoint costs seconds of CPU; a release pipeline
converts one checkpoint to several formats, so digests are remembered per file identity
(device, inode, size, mtime and ctime in ns: any write changes ctime) in
``$XDG_CACHE_HOME/bitpack/sha256.json`` and a file is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from .._version import __version__
from ..containers.files import sha256_file, write_atomic
from ..containers.hf_dir import (
    RECEIPT_SUFFIX,  # also how --overwrite recognises a directory bitpack wrote
)

SCHEMA = 1


def cache_path() -> Path:
    base = os.environ.get("BITPACK_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bitpack"
    return Path(base) / "sha256.json"


def _identity(path: Path) -> str:
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class DigestCache:
    """Remembered sha256 digests keyed by the resolved path and the file's identity."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()
        try:
            self.entries = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def sha256(self, path: Path) -> str:
        key, ident = str(path.resolve()), _identity(path)
        hit = self.entries.get(key)
        if isinstance(hit, dict) and hit.get("id") == ident and isinstance(hit.get("sha256"), str):
            return hit["sha256"]
        digest = sha256_file(path)
        if _identity(path) == ident:  # unchanged while it was read
            self.entries[key] = {"id": ident, "sha256": digest}
            self.dirty = True
        return digest

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            live = {k: v for k, v in self.entries.items() if Path(k).exists()}
            write_atomic(self.path, json.dumps(live).encode())
        except OSError:
            pass  # a read-only home only costs the next run a re-hash


class Hasher:
    """sha256 of files on a background thread; ``result()`` waits for it."""

    def __init__(self, files: list[Path]) -> None:
        self.files = list(dict.fromkeys(Path(f) for f in files))
        self._hashes: dict[Path, str] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bitpack-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            cache = DigestCache()
            for f in self.files:
                self._hashes[f] = cache.sha256(f)
            cache.save()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            self._error = err

    def result(self) -> list[dict[str, str]]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return [{"path": str(f), "sha256": self._hashes[f]} for f in self.files]


def output_digest(out: Path, sha256: str | dict[str, str] | None = None) -> dict[str, Any]:
    """A file's sha256; for a model directory, every file's and one over the sorted list
    (``sha256sum``-style lines "<hex>  <name>\\n"), so one value still names the whole output.
    ``sha256``: what is already known, hashed as it was written (the file's digest, or
    {relative path: digest} for files of the directory); the rest is read and hashed here."""
    if out.is_file():
        return {"path": str(out), "sha256": (sha256 if isinstance(sha256, str) else None) or sha256_file(out)}
    known = sha256 if isinstance(sha256, dict) else {}
    names = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    listed = [{"path": str(n), "sha256": known.get(n.as_posix()) or sha256_file(out / n)} for n in names]
    manifest = "".join(f"{f['sha256']}  {f['path']}\n" for f in listed)
    return {"path": str(out), "sha256": hashlib.sha256(manifest.encode()).hexdigest(), "files": listed}


def receipt_path(out: Path) -> Path:
    return out.with_name(out.name + RECEIPT_SUFFIX)


def write_receipt(out: Path, *, source: dict[str, Any], inputs: list[dict[str, str]], target: dict[str, Any],
                  tensors: list[dict[str, Any]], verify: dict[str, Any] | None,
                  companions: list[Path] = (), output_sha256: str | dict[str, str] | None = None) -> Path:
    """``companions``: files written beside a single-file output (a TL GGUF's kernel_config.ini);
    they are listed in ``output.files`` with the output itself. ``output_sha256``: the output's
    digest, if its writer hashed it already."""
    output = output_digest(out, output_sha256)
    if companions:
        output["files"] = [{"path": out.name, "sha256": output["sha256"]},
                           *({"path": p.name, "sha256": sha256_file(p)} for p in companions)]
    doc = {
        "schema": SCHEMA,
        "bitpack_version": __version__,
        "source": source,
        "inputs": inputs,
        "target": target,
        "tensors": [{"name": t["name"], "codec": t.get("codec"), "bits_per_weight": t.get("bits_per_weight")}
                    for t in tensors],
        "output": output,
        "verify": verify,
    }
    path = receipt_path(out)
    write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path
