"""Hugging Face model directories: reading config.json, finding tokenizer files, writing atomically.

Generic on purpose: nothing here knows about architectures or quantization configs. The models
layer decides what goes into config.json; this module only makes sure it is read faithfully
(duplicate keys reported, not silently collapsed) and written all-or-nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Self

from ..errors import ContainerError
from ..jsonsafe import check_depth
from .files import create_temp_sibling, fsync_dir
from .safetensors_read import INDEX_NAME, SafetensorsFile
from .safetensors_write import SafetensorsWriter

# Files a runtime needs besides the weights; copied unchanged (checkpoints.md §7).
COMPRESSION_CONFIG = "compression_config.json"  # a BitStack stack's budget table (spec/bitstack.md §5.1)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "added_tokens.json", "vocab.json", "merges.txt",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class ConfigWarning:
    """A key that occurs more than once in one JSON object; the last value was kept."""

    path: str  # dotted location, e.g. "quantization_config" or "rope_scaling.type"
    values: tuple[Any, ...]  # every occurrence, in file order

    @property
    def differ(self) -> bool:
        """Whether the occurrences disagree (then the file is ambiguous, not just untidy)."""
        return any(v != self.values[-1] for v in self.values)

    @property
    def message(self) -> str:
        how = "with different values" if self.differ else "with identical values"
        return (f"config.json: key {self.path!r} appears {len(self.values)} times {how}; "
                "using the last one, as json and transformers do")

    def __str__(self) -> str:
        return self.message


def read_config(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[ConfigWarning]]:
    """Parse ``config.json`` (``path`` is the file or its directory), reporting duplicate keys.

    HF1BitLLM's config has ``quantization_config`` twice. Python's json keeps the last one
    silently; we keep the last one too (so we read what transformers reads) but report every
    duplicate with all its values, so callers can refuse when they disagree (checkpoints.md §3.2).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    found: list[tuple[dict[str, Any], str, list[Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        seen: dict[str, list[Any]] = {}
        for key, value in pairs:
            seen.setdefault(key, []).append(value)
            obj[key] = value
        found.extend((obj, k, vs) for k, vs in seen.items() if len(vs) > 1)
        return obj

    try:
        config = json.loads(check_depth(path.read_text(encoding="utf-8"), str(path)), object_pairs_hook=hook)
    except FileNotFoundError:
        raise ContainerError(f"{path}: no config.json (an HF model directory needs one)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ContainerError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(config, dict):
        raise ContainerError(f"{path}: top level is a JSON {type(config).__name__}, not an object")
    # The hook runs bottom-up and cannot know where an object sits; find it by identity.
    locations = _object_paths(config)
    warnings = [ConfigWarning(".".join(locations[id(obj)] + [key]), tuple(values))
                for obj, key, values in found]
    return config, warnings


def _object_paths(root: Any, prefix: list[str] | None = None,
                  out: dict[int, list[str]] | None = None) -> dict[int, list[str]]:
    prefix = prefix or []
    out = {} if out is None else out
    if isinstance(root, dict):
        out[id(root)] = prefix
        for key, value in root.items():
            _object_paths(value, prefix + [key], out)
    elif isinstance(root, list):
        for i, value in enumerate(root):
            _object_paths(value, prefix + [f"[{i}]"], out)
    return out


def tokenizer_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """The tokenizer and generation files present in ``model_dir``, in a fixed order."""
    model_dir = Path(model_dir)
    return [model_dir / name for name in TOKENIZER_FILES if (model_dir / name).is_file()]


# What marks an output directory as bitpack's (so --overwrite may delete it): the receipt
# convert writes beside it (pipelines/receipt.py: <output>.receipt.json with "bitpack_version"),
# or a "bitpack.*" key in a safetensors header, which every safetensors target writes
# (models/hf_target.py, models/stack_target.py); --no-receipt outputs are known by the latter.
RECEIPT_SUFFIX = ".receipt.json"
METADATA_PREFIX = "bitpack."


def written_by_bitpack(folder: Path) -> bool:
    """Whether ``folder`` is an output bitpack wrote: its receipt, or bitpack's safetensors metadata."""
    receipt = folder.with_name(folder.name + RECEIPT_SUFFIX)
    try:
        if receipt.is_file() and "bitpack_version" in json.loads(receipt.read_text(encoding="utf-8")):
            return True
    except (OSError, ValueError, TypeError):
        pass  # an unreadable receipt is no evidence; the metadata may still be
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with SafetensorsFile(path) as f:
                if any(k.startswith(METADATA_PREFIX) for k in f.metadata):
                    return True
        except ContainerError:
            continue
    return False


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


class ModelDirWriter:
    """Write an HF-style model directory all at once, or not at all.

    Everything goes into a sibling staging directory ``.<name>.<random>.part``; :meth:`commit`
    renames it to ``out_dir``. An existing non-empty ``out_dir`` is refused unless
    ``overwrite=True``, and even then it is replaced only after the new directory is complete.
    ``protect`` names sources (files or directories) that must survive: ``out_dir`` may not be
    or contain them, and neither may it contain a file given to :meth:`copy`.

    As a context manager, an exception discards the staging directory; leaving the block without
    calling :meth:`commit` discards it as well (nothing half-finished is ever published).
    """

    def __init__(self, out_dir: str | os.PathLike[str], overwrite: bool = False,
                 protect: Iterable[str | os.PathLike[str]] = ()):
        self.out_dir = Path(out_dir).absolute()
        self.overwrite = overwrite
        self._protect = [Path(p).resolve() for p in protect]
        self._check_target()
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.staging: Path | None = create_temp_sibling(self.out_dir, directory=True)
        self.committed = False
        self._hashed: dict[str, SafetensorsWriter] = {}

    def _check_target(self) -> None:
        out = self.out_dir
        if out.is_symlink():
            raise ContainerError(f"{out} is a symbolic link; name the real directory")
        if out.exists() and not out.is_dir():
            raise ContainerError(f"{out} exists and is not a directory")
        real = out.resolve()
        for src in self._protect:
            if _inside(src, real):
                raise ContainerError(f"refusing to write {out}: it would replace the source {src}")
        if out.is_dir() and any(out.iterdir()):
            if not self.overwrite:
                raise ContainerError(f"{out} exists and is not empty; pass --overwrite to replace it "
                                     "(only a directory bitpack wrote is replaced)")
            if not written_by_bitpack(out):
                # --overwrite deletes the whole directory: never one holding files bitpack did not write
                raise ContainerError(
                    f"refusing to replace {out}: --overwrite replaces only a directory bitpack wrote (a receipt "
                    f"{out.name}.receipt.json beside it, or bitpack metadata in its safetensors), and this one "
                    "has neither; choose another output or empty it yourself")

    def path_for(self, filename: str) -> Path:
        """Where to write ``filename`` (relative, no ``..``) inside the staging directory."""
        if self.staging is None:
            raise ContainerError(f"{self.out_dir}: writer already committed or aborted")
        rel = PurePosixPath(filename)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or "\\" in filename:
            raise ContainerError(f"{self.out_dir}: invalid file name {filename!r}")
        target = self.staging.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.path_for(name)
        try:
            target.write_bytes(data)
        except OSError as err:
            raise ContainerError(f"cannot write {target} ({err.strerror or err})") from None
        return target

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as indented JSON (key order kept, UTF-8, trailing newline)."""
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        return self.write_bytes(name, text.encode("utf-8"))

    def write_index(self, weight_map: Mapping[str, str], total_size: int,
                    name: str = INDEX_NAME) -> Path:
        """The ``model.safetensors.index.json`` transformers reads for sharded checkpoints."""
        return self.write_json(name, {"metadata": {"total_size": int(total_size)},
                                      "weight_map": dict(weight_map)})

    def safetensors(self, name: str, metadata: Mapping[str, str] | None = None, *,
                    digest: bool = False) -> SafetensorsWriter:
        """A streaming writer for ``name`` inside the staging directory; with ``digest`` it
        hashes the file during its fsync, and :attr:`digests` lists the result."""
        writer = SafetensorsWriter(self.path_for(name), metadata, digest=digest)
        if digest:
            self._hashed[name] = writer
        return writer

    @property
    def digests(self) -> dict[str, str]:
        """{file name: sha256} of the safetensors files hashed as they were written (closed ones)."""
        return {name: w.sha256 for name, w in self._hashed.items() if w.sha256 is not None}

    def copy(self, file: str | os.PathLike[str], name: str | None = None) -> Path:
        """Copy ``file`` unchanged (contents only) as ``name`` (default: its own name)."""
        src = Path(file)
        if not src.is_file():
            raise ContainerError(f"{src}: no such file to copy")
        if _inside(src.resolve(), self.out_dir.resolve()):
            raise ContainerError(f"refusing to write {self.out_dir}: it contains the source file {src}")
        self._protect.append(src.resolve())
        target = self.path_for(name or src.name)
        try:
            shutil.copyfile(src, target)
        except OSError as err:
            raise ContainerError(f"cannot copy {src} ({err.strerror or err})") from None
        return target

    def commit(self) -> Path:
        """Publish the staging directory as ``out_dir``; an old one is removed only afterwards."""
        if self.staging is None:
            raise ContainerError(f"{self.out_dir}: writer already committed or aborted")
        try:
            self._check_target()  # the world may have changed since we started
            old = None
            if self.out_dir.is_dir():
                if any(self.out_dir.iterdir()):
                    old = create_temp_sibling(self.out_dir.with_name(self.out_dir.name + ".old"),
                                              directory=True)
                    os.rmdir(old)  # we only wanted a unique name
                    os.rename(self.out_dir, old)
                else:
                    os.rmdir(self.out_dir)
            try:
                os.rename(self.staging, self.out_dir)
            except BaseException:
                if old is not None:
                    os.rename(old, self.out_dir)  # put the previous directory back
                raise
        except OSError as err:
            self.abort()
            raise ContainerError(f"cannot publish {self.out_dir} ({err.strerror or err})") from None
        except BaseException:
            self.abort()
            raise
        self.staging = None
        self.committed = True
        fsync_dir(self.out_dir.parent)  # the rename is durable, as StagedFile's are
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out_dir

    def abort(self) -> None:
        """Delete the staging directory; ``out_dir`` is left as it was."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()  # no-op after commit()

    def __del__(self) -> None:  # a forgotten writer must not leave a staging directory behind
        try:
            self.abort()
        except Exception:  # noqa: BLE001, S110 -- a finalizer must never raise
            pass
