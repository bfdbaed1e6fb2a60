"""Opening a source: what a path is (containers.sniff: a directory with config.json, a GGUF
magic, a safetensors header), a Hub repo id fetched into the cache, and the canonical model of
either, which every pipeline starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..containers.sniff import sniff
from ..errors import BitpackError
from ..models.gguf_source import open_gguf
from ..models.hf_source import open_hf
from ..models.model import Model
from ..models.stack_source import is_stack, open_stack


@dataclass
class Source:
    path: Path  # what to open: a local file or folder, or a Hub snapshot in the cache
    origin: dict[str, Any]  # the receipt's "source": {"path"} or {"repo", "revision", "commit", "path"}
    hub: bool = False


def provenance(origin: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    """What an output records of its source (``bitpack.source``): the Hub repo, revision and
    commit, or the source's own name, and the names of the files read below it -- never a local
    absolute path, which would publish the converting machine's folders with the model. The
    receipt beside the output keeps the path and every file's sha256."""
    root = Path(origin["path"]) if "path" in origin else None
    names = []
    for f in files:
        f = Path(f)
        try:
            names.append(str(f.relative_to(root)) if root is not None and root.is_dir() else f.name)
        except ValueError:
            names.append(f.name)
    hub = {k: origin[k] for k in ("repo", "revision", "commit") if k in origin}
    return {**hub, "name": root.name if root is not None else None, "files": sorted(names)}


def resolve(src: str | Path, revision: str | None = None, *, progress: bool = True) -> Source:
    """A local path as it is; an ``org/name[@rev]`` that is not a local path is fetched from
    the Hub (only the files bitpack reads, pinned to the resolved commit)."""
    path = Path(src)
    if path.exists():
        if revision is not None:
            raise BitpackError(f"--revision applies to Hub repo ids; {src} is a local path")
        return Source(path, {"path": str(path)})
    # huggingface_hub costs about 0.2 s to import: loaded only when a source is not a local path
    from ..containers.hub import fetch, parse_repo_id, split_file

    repo_text, filename = split_file(str(src))
    parsed = parse_repo_id(repo_text)
    if parsed is None:
        raise BitpackError(f"{src} does not exist (and is not a Hub repo id like org/name, org/name@revision "
                           "or org/name:FILE.gguf)")
    repo, at = parsed
    if at is not None and revision is not None and at != revision:
        raise BitpackError(f"{src} names revision {at!r} but --revision says {revision!r}")
    try:
        snap = fetch(repo, at or revision, progress=progress, filename=filename)
    except BitpackError as err:  # say why a Hub was asked at all: a mistyped local path lands here
        raise BitpackError(f"{src} is not a local path, and as a Hub repo id: {err}") from None
    chosen = {"file": filename} if filename else {}
    return Source(snap.source, {"repo": snap.repo, "revision": snap.revision, "commit": snap.commit, **chosen,
                                "path": str(snap.source)}, hub=True)


def open_model(path: str | Path, *, dialect: str | None = None, tile_params: dict[str, Any] | None = None,
               scale_convention: str | None = None, revision: str | None = None, progress: bool = True,
               budget: int | str | None = None, blocks: int | dict[str, int] | None = None,
               architecture: str | None = None) -> Model:
    """The canonical model of a local file or folder, or of a Hub repo id. A BitStack stack
    loads at ``budget`` (bytes or "300MB") or with ``blocks`` per matrix; by default all blocks.
    ``architecture`` names the graph of a source whose config names a class bitpack does not know."""
    source = resolve(path, revision, progress=progress)
    if is_stack(source.path) or budget is not None or blocks is not None:
        # with a budget, open it as a stack whatever it looks like: a damaged stack then
        # reports what is damaged, and anything else that it is not a stack
        model = open_stack(source.path, budget=budget, blocks=blocks)
        model.origin = source.origin
        return model
    if sniff(source.path) == "gguf":
        model = open_gguf(source.path, dialect=dialect, tile_params=tile_params, architecture=architecture)
    else:
        model = open_hf(source.path, scale_convention=scale_convention, architecture=architecture)
    model.origin = source.origin
    return model
