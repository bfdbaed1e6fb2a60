"""Hugging Face Hub sources: ``org/name[@revision]`` fetched into huggingface_hub's cache.

``bitpack convert org/name --to tl2`` needs a local snapshot it can read like a model directory.
This module gets one with huggingface_hub itself, so its cache layout, ``HF_TOKEN``,
``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HOME`` / ``HF_HUB_CACHE`` behave exactly as for every
other Hub tool, and a second run downloads nothing. Two things it adds:

* Pinned to one commit. The revision (default ``main``) is resolved to a commit sha first, the
  file list is read at that sha and every file is downloaded from that sha, so a branch that moves
  during the download cannot mix files of two commits. The sha is returned for the receipt.
* Only what bitpack reads: ``config.json``, the weights the safetensors reader would pick
  (``model.safetensors``, else the index and exactly the shards its ``weight_map`` names), the
  tokenizer/generation files (``hf_dir.TOKENIZER_FILES``) and ``compression_config.json``
  (BitStack). Never ``.bin``/``.pt``/``.pth`` copies, ``original/`` folders or README images,
  which on real repos are often larger than the model itself. A repo without config.json but with
  exactly one ``.gguf`` file yields that file.

``config.json`` is downloaded last, so in offline mode a cached snapshot holding config.json was
completely downloaded (the shards an index names are checked one by one as well).

Every failure is one line, raised as :class:`~bitpack.errors.BitpackError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2  # huggingface_hub 2.x's HTTP client (1.x used httpx, 0.x requests)
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    DisabledRepoError,
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import tqdm as hf_tqdm
from huggingface_hub.utils import validate_repo_id

from .._version import __version__
from ..errors import BitpackError
from .hf_dir import COMPRESSION_CONFIG, TOKENIZER_FILES
from .safetensors_read import pick_weights, read_index

__all__ = ["HubSnapshot", "fetch", "parse_repo_id"]

CONFIG_NAME = "config.json"
DEFAULT_REVISION = "main"

# What a local path looks like rather than a repo id.
_FILE_SUFFIXES = (".gguf", ".safetensors", ".json")
# Revisions: branch and tag names, refs/pr/N, commit shas. Git allows more; the Hub's web UI not.
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_REVISION_RE = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*", re.ASCII)


def parse_repo_id(text: str) -> tuple[str, str | None] | None:
    """``"org/name"`` -> ``("org/name", None)``, ``"org/name@rev"`` -> ``("org/name", "rev")``.

    None when ``text`` is not a Hub repo id: it exists as a local path, looks like a path (starts
    with ``.``, ``/`` or ``~``, has no or more than one ``/``, ends in .gguf/.safetensors/.json)
    or uses characters the Hub does not allow (huggingface_hub's own ``validate_repo_id``).
    """
    if not isinstance(text, str) or not text or text != text.strip():
        return None
    if text.startswith((".", "/", "~")) or "\\" in text:
        return None
    repo, at, revision = text.partition("@")
    if repo.count("/") != 1 or repo.lower().endswith(_FILE_SUFFIXES):
        return None
    if at and (not _REVISION_RE.fullmatch(revision) or ".." in revision
               or revision.endswith((".lock", "."))):
        return None
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    if os.path.lexists(text) or os.path.lexists(repo):
        return None
    return repo, (revision if at else None)


def split_file(text: str) -> tuple[str, str | None]:
    """``org/name[@rev]:FILE.gguf`` -> (``org/name[@rev]``, ``FILE.gguf``): one GGUF file of a repo
    that holds several (Prism's ``-gguf`` repos hold F16 and Q2_0 files); other text unchanged."""
    head, sep, name = text.rpartition(":")
    parts = PurePosixPath(name).parts
    if sep and name.lower().endswith(".gguf") and not name.startswith("/") and ".." not in parts \
            and parse_repo_id(head) is not None:
        return head, name
    return text, None


@dataclass(frozen=True)
class HubSnapshot:
    """A Hub revision fetched into huggingface_hub's cache (only the files bitpack reads)."""

    repo: str
    revision: str  # what the user asked for ("main" when nothing was given)
    commit: str  # the 40-hex commit sha every file was downloaded from
    path: Path  # the snapshot folder in the cache, read like a local model directory
    files: list[Path]  # the files bitpack uses, inside ``path``
    source: Path  # what to open: ``path``, or the one .gguf file of a GGUF-only repo


def fetch(repo: str, revision: str | None = None, *, progress: bool = True,
          token: str | None = None, filename: str | None = None) -> HubSnapshot:
    """Download (or find in the cache) what bitpack needs of ``repo`` at ``revision``.

    ``token`` overrides ``HF_TOKEN`` / the saved login. ``progress`` shows huggingface_hub's
    download bars on stderr (they switch themselves off when stderr is not a terminal).
    With ``HF_HUB_OFFLINE=1`` nothing goes to the network: the revision is looked up in the
    cache's refs and every needed file must already be cached. ``filename`` fetches that one
    GGUF file of the repo and nothing else.
    """
    revision = revision or DEFAULT_REVISION
    ctx = _Context(repo=repo, revision=revision, endpoint=_endpoint(), cache=_hub_cache(),
                   token=token, offline=_offline(),
                   tqdm_class=None if progress else _SilentTqdm, filename=filename)
    try:
        validate_repo_id(repo)
        return ctx.fetch_cached() if ctx.offline else ctx.fetch_online()
    except BitpackError:
        raise
    except Exception as err:  # every known failure is explained; anything else is a bug, re-raised
        explained = ctx.explain(err)
        if explained is None:
            raise
        raise BitpackError(explained) from None


# --- environment, read at call time ----------------------------------------------------------------
# huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE/HF_HOME and HF_HUB_OFFLINE once, when it is
# imported (constants.py). bitpack looks them up again when fetch() is called, with the same
# precedence, and passes them explicitly, so a variable set after import (a test, an embedding
# application) is honoured too.

def _endpoint() -> str:
    env = os.environ.get("HF_ENDPOINT")
    return env.rstrip("/") if env else constants.ENDPOINT


def _hub_cache() -> str:
    """constants.HF_HUB_CACHE, but looked up now: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub."""
    if getattr(constants, "_staging_mode", False):  # huggingface_hub's own CI: its separate cache
        return constants.HF_HUB_CACHE
    env = os.environ
    xdg = env.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    home = os.path.expandvars(os.path.expanduser(env.get("HF_HOME", os.path.join(xdg, "huggingface"))))
    hub = env.get("HF_HUB_CACHE", env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub")))
    return os.path.expandvars(os.path.expanduser(hub))


def _offline() -> bool:
    def true(value: str | None) -> bool:
        return (value or "").upper() in {"1", "ON", "YES", "TRUE"}
    return (constants.is_offline_mode() or true(os.environ.get("HF_HUB_OFFLINE"))
            or true(os.environ.get("TRANSFORMERS_OFFLINE")))


class _SilentTqdm(hf_tqdm):
    """huggingface_hub's progress bar, always disabled (``progress=False``, e.g. ``--json``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


# --- the fetch itself ------------------------------------------------------------------------------

@dataclass
class _Context:
    repo: str
    revision: str
    endpoint: str
    cache: str
    token: str | None
    offline: bool
    tqdm_class: type | None
    filename: str | None = None  # one GGUF file chosen with org/name:FILE
    commit: str | None = None
    current: str | None = None  # the file being downloaded, for error messages
    got: dict[str, Path] = field(default_factory=dict)  # fetched while choosing (the index)

    @property
    def where(self) -> str:
        return f"{self.repo}@{self.revision}"

    def api(self) -> HfApi:
        return HfApi(endpoint=self.endpoint, token=self.token, library_name="bitpack",
                     library_version=__version__)

    # online: resolve, list at the commit, download pinned to the commit
    def fetch_online(self) -> HubSnapshot:
        api = self.api()
        try:
            # resolve_revision also records refs/<revision> in the cache, which offline mode reads.
            self.commit = api.resolve_revision(self.repo, revision=self.revision, cache_dir=self.cache,
                                               token=self.token).resolved
            info = api.model_info(self.repo, revision=self.commit, token=self.token)
            names = {s.rfilename for s in info.siblings or []}
        except (HfHubHTTPError, HFValidationError):
            raise
        except (ValueError, KeyError, TypeError, AssertionError) as err:  # not JSON, or not the Hub's
            raise BitpackError(f"{self.endpoint} does not answer like a Hugging Face Hub "
                               f"({type(err).__name__}: {_line(err)}); check HF_ENDPOINT") from None
        if not (isinstance(self.commit, str) and _SHA_RE.fullmatch(self.commit)):
            raise BitpackError(f"{self.endpoint} resolved {self.where} to {self.commit!r}, not a commit sha; "
                               "check HF_ENDPOINT")
        return self._collect(names, self._download, missing=self._missing_remote)

    def _download(self, name: str) -> Path:
        self.current = name
        path = hf_hub_download(self.repo, name, revision=self.commit, cache_dir=self.cache,
                               endpoint=self.endpoint, token=self.token,
                               tqdm_class=self.tqdm_class, library_name="bitpack",
                               library_version=__version__)
        self.current = None
        return Path(path)

    def _missing_remote(self, what: str) -> str:
        return f"{self.where} (commit {self.commit}) {what}"

    # offline: refs/<revision> -> commit, then only what is in snapshots/<commit>
    def fetch_cached(self) -> HubSnapshot:
        self.commit = self.api().resolve_revision(self.repo, revision=self.revision,
                                                  cache_dir=self.cache, local_files_only=True).resolved
        folder = self._snapshot_folder()
        if not folder.is_dir():
            raise BitpackError(self._not_cached("nothing of it is cached"))
        names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

        def cached(name: str) -> Path:
            path = folder / name
            if not path.is_file():
                raise BitpackError(self._not_cached(f"{name} is missing"))
            return path
        return self._collect(names, cached, missing=lambda what: self._not_cached(f"the cached snapshot {what}"))

    def _snapshot_folder(self) -> Path:
        return Path(self.cache) / repo_folder_name(repo_id=self.repo, repo_type="model") / "snapshots" / str(self.commit)

    def _not_cached(self, what: str) -> str:
        return (f"HF_HUB_OFFLINE is set and {self.where} is not fully in the cache {self.cache} "
                f"(commit {self.commit}: {what}); run once without HF_HUB_OFFLINE to download it")

    # which files, in which order
    def _collect(self, names: set[str], get: Callable[[str], Path],
                 missing: Callable[[str], str]) -> HubSnapshot:
        ggufs = sorted(n for n in names if n.lower().endswith(".gguf"))
        if self.filename is not None:
            if self.filename not in names:
                raise BitpackError(missing(f"has no file {self.filename}; its GGUF files: "
                                           f"{', '.join(ggufs) or 'none'}"))
            path = get(self.filename)
            return self._snapshot([self.filename], [path], source=path)
        if CONFIG_NAME not in names:
            if len(ggufs) == 1:
                path = get(ggufs[0])
                return self._snapshot([ggufs[0]], [path], source=path)
            if ggufs:
                raise BitpackError(
                    f"{self.where} has no config.json but {len(ggufs)} GGUF files ({', '.join(ggufs)}); "
                    f"choose one as {self.repo}:FILE, e.g. {self.repo}:{ggufs[0]}")
            raise BitpackError(missing("has neither config.json (an HF checkpoint) nor a .gguf file, "
                                       "so nothing bitpack can read"))
        weights = self._weights(names, get, missing)
        extras = [n for n in dict.fromkeys((*TOKENIZER_FILES, COMPRESSION_CONFIG)) if n in names]
        # config.json last: in the cache, its presence marks a fetch that completed.
        for name in [*weights, *extras, CONFIG_NAME]:
            if name not in self.got:
                self.got[name] = get(name)
        listed = [CONFIG_NAME, *weights, *extras]
        return self._snapshot(listed, [self.got[n] for n in listed], source=None)

    def _weights(self, names: set[str], get: Callable[[str], Path],
                 missing: Callable[[str], str]) -> list[str]:
        """What bitpack's safetensors reader picks in a directory (safetensors_read.pick_weights)."""
        top = {n for n in names if "/" not in n}
        if not any(n.endswith(".safetensors") for n in top):
            others = sorted(n for n in top if n.endswith((".bin", ".pt", ".pth", ".ckpt")))
            found = f" (it has {', '.join(others)})" if others else ""
            raise BitpackError(missing(f"has config.json but no .safetensors weights{found}; "
                                       "bitpack reads safetensors checkpoints"))
        chosen, _ = pick_weights(top, self.where)
        if not chosen.endswith(".json"):
            return [chosen]
        self.got[chosen] = path = get(chosen)
        shards = self._shards(chosen, path)
        absent = [s for s in shards if s not in names]
        if absent:
            raise BitpackError(missing(f"{chosen} names {len(absent)} shard(s) that are not there: "
                                       f"{', '.join(absent)}"))
        return [chosen, *shards]

    def _shards(self, index: str, path: Path) -> list[str]:
        """The shard files the index names, in weight_map order (safetensors_read.read_index)."""
        wmap, _ = read_index(path, f"{self.where}: {index}")
        return list(dict.fromkeys(wmap.values()))

    def _snapshot(self, names: list[str], paths: list[Path], source: Path | None) -> HubSnapshot:
        first = PurePosixPath(names[0])
        folder = paths[0].parents[len(first.parts) - 1]
        return HubSnapshot(repo=self.repo, revision=self.revision, commit=str(self.commit),
                           path=folder, files=paths, source=source if source is not None else folder)

    # errors -> one line
    def explain(self, err: BaseException) -> str | None:
        what = f" ({self.current})" if self.current else ""
        login = "(or log in with `hf auth login`)"
        if isinstance(err, HFValidationError):
            return f"{self.repo!r} is not a valid Hub repo id: {_line(err)}"
        if self.offline and isinstance(err, (RevisionResolutionError, LocalEntryNotFoundError,
                                             OfflineModeIsEnabled)):
            if self.commit is None:
                return (f"HF_HUB_OFFLINE is set and {self.where} is not in the cache {self.cache} "
                        "(no cached commit for this revision); run once without HF_HUB_OFFLINE to download it")
            return self._not_cached(_line(err))
        if isinstance(err, GatedRepoError):
            page = f"{self.endpoint}/{self.repo}"
            if err.response is not None and err.response.status_code == 403:
                return (f"{self.repo} is a gated repo and this token's account has not been granted access "
                        f"yet: accept its terms at {page}, then retry with HF_TOKEN set to that account's token")
            return (f"{self.repo} is a gated repo: accept its terms at {page} with your account, "
                    f"then set HF_TOKEN to a token of that account {login}")
        if isinstance(err, RepositoryNotFoundError):
            return (f"{self.repo}: no such model repo on {self.endpoint} "
                    f"(if it is private, set HF_TOKEN to a token that can read it {login})")
        if isinstance(err, RevisionNotFoundError):
            return (f"{self.repo}: revision {self.revision!r} not found on {self.endpoint} "
                    "(give a branch, a tag or a commit sha)")
        if isinstance(err, RemoteEntryNotFoundError):
            return f"{self.where} (commit {self.commit}): {self.current or 'a file'} is not on {self.endpoint}"
        if isinstance(err, DisabledRepoError):
            return f"{self.repo}: access to this repo is disabled on {self.endpoint}"
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            status = err.response.status_code
            said = f": {_line(err.server_message)}" if err.server_message else ""
            if status == 401:
                return (f"{self.endpoint} rejected the access token{said} "
                        "(check HF_TOKEN or `hf auth login`, or unset it for public repos)")
            if status == 403:
                return f"{self.endpoint} refused access to {self.where}{what}{said} (HTTP 403; check the token's permissions)"
            return f"{self.endpoint} answered HTTP {status} for {self.where}{what}{said}"
        network = _network_cause(err)
        if network is not None:
            return (f"cannot reach {self.endpoint} ({type(network).__name__}: {_line(network) or 'no answer'}); "
                    "check the connection, proxy or HF_ENDPOINT, or set HF_HUB_OFFLINE=1 to use the cache")
        if isinstance(err, FileMetadataError):
            return (f"{self.endpoint} does not answer like a Hugging Face Hub{what}: {_line(err)} "
                    "(check HF_ENDPOINT)")
        if isinstance(err, (RevisionResolutionError, LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return f"could not fetch {self.where}{what} from {self.endpoint}: {_line(err)}"
        if isinstance(err, OSError):
            return f"downloading {self.where}{what} from {self.endpoint} failed: {_line(err)}"
        return None


def _network_cause(err: BaseException) -> BaseException | None:
    """The HTTP client's transport error (connection, timeout, proxy) in ``err``'s chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, httpx2.TransportError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _line(value: object) -> str:
    """One line: huggingface_hub's messages span several."""
    return " ".join(str(value).split())
