"""A local stand-in for the Hugging Face Hub: the part of its protocol huggingface_hub downloads with.

Written against huggingface_hub 2.4.0 (hf_api.py, file_download.py, utils/_http.py), answering
the way huggingface.co does:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``HfApi.model_info``,
  ``repo_info``, ``resolve_revision``): ``sha`` of the resolved commit, ``siblings`` (with
  ``size``, ``blobId`` and ``lfs`` {size, sha256, pointerSize} only when ``?blobs=true``, as the
  Hub does), ``private``, ``gated`` (false or "manual"). A gated repo's info is public, as on the
  Hub; only its files need access.
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``list_repo_tree``, used by
  ``snapshot_download``): files with ``oid``/``size``/``lfs`` {oid, size, pointerSize} and
  directories; ``?recursive=true``. One page (no ``Link: rel="next"`` header).
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (``hf_hub_download``): small files are answered
  directly with ``ETag`` = git blob sha1, ``X-Repo-Commit``, ``Content-Length``. LFS files
  (safetensors, gguf, bin, pth, model, ...) are answered with a 302 to a second "CDN" listener on
  another port, carrying ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``X-Repo-Commit``:
  huggingface_hub takes the file's metadata from that redirect (it never follows a redirect to
  another origin on HEAD), then GETs the CDN URL without the Authorization header. With
  ``cdn=False`` LFS files are served directly (ETag = sha256 and the X-Linked headers on the 200).
  Both listeners honour ``Range: bytes=a-[b]`` (206 + ``Content-Range``; 416 when unsatisfiable),
  which huggingface_hub sends when it resumes an interrupted download.
  No ``X-Xet-Hash`` header, ``xet-auth`` link or ``xetHash`` field is ever sent, so hf_xet is never
  used and every download is plain HTTP.
* Errors as the Hub signals them (``hf_raise_for_status`` keys on ``X-Error-Code``):
  unknown repo, or private repo without a token that can read it: 401 (no token) / 404 (token)
  with ``X-Error-Code: RepoNotFound``; unknown revision: 404 ``RevisionNotFound``; unknown file:
  404 ``EntryNotFound`` with ``X-Repo-Commit``; gated repo's file without access: 401 (no token)
  / 403 (token, terms not accepted) ``GatedRepo``; an unknown token: 401 with
  ``X-Error-Message: Invalid credentials in Authorization header`` and no error code.

Repos have several commits: ``revisions`` maps names ("main", "v1", or an explicit 40-hex sha)
to folders (or {path: bytes} dicts); each distinct folder is one commit, so "main" can point at
a bad commit while an older one is good, and :meth:`HubServer.set_ref` moves a branch (e.g. from
a hook, in the middle of a download). Every request is logged (:class:`Request`: which listener,
method, path, the repo file it concerns, Range header, whether it carried a token).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".model", ".npz", ".h5")
LAST_MODIFIED = "2025-04-14T12:00:00.000Z"
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Blob:
    """One file's content (read lazily from ``source``) and the hashes the Hub reports for it."""

    source: Path | bytes
    size: int
    sha256: str
    git_sha1: str  # git blob id of the content, or of the LFS pointer for LFS files
    lfs: bool

    @classmethod
    def of(cls, name: str, source: Path | bytes) -> Blob:
        data = source.read_bytes() if isinstance(source, Path) else bytes(source)
        sha256 = hashlib.sha256(data).hexdigest()
        lfs = name.lower().endswith(LFS_SUFFIXES)
        stored = _lfs_pointer(sha256, len(data)) if lfs else data
        return cls(source=source, size=len(data), sha256=sha256, git_sha1=_git_blob_sha1(stored), lfs=lfs)

    def read(self) -> bytes:
        return self.source.read_bytes() if isinstance(self.source, Path) else self.source

    @property
    def pointer_size(self) -> int:
        return len(_lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, Blob]]  # sha -> {path: blob}
    refs: dict[str, str]  # branch/tag -> sha
    private: bool = False
    gated: bool = False
    access: set[str] = field(default_factory=set)  # tokens that may read it (private) / accepted terms (gated)

    def resolve(self, rev: str) -> str | None:
        if rev in self.refs:
            return self.refs[rev]
        return rev if rev in self.commits else None


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str  # request path with query
    repo: str | None
    file: str | None  # the repo file a resolve/CDN request is about
    range: str | None
    token: str | None
    status: int | None  # None: the connection was dropped before an answer

    @property
    def downloads_content(self) -> bool:
        """A GET answered with file bytes (not metadata, a redirect or an error)."""
        return self.method == "GET" and self.file is not None and self.status in (200, 206)


class HubServer:
    """Serve repos over HTTP on 127.0.0.1 (random port); ``url`` is what HF_ENDPOINT should be."""

    def __init__(self, *, tokens: Iterable[str] = ("hf_user_token",), cdn: bool = True):
        self.tokens = set(tokens)  # tokens the "Hub" knows (others get 401 Invalid credentials)
        self.cdn = cdn
        self.repos: dict[str, Repo] = {}
        self.log: list[Request] = []
        self.hooks: list[Callable[[Request], None]] = []  # called after each logged request
        self.truncate: dict[str, int] = {}  # repo file -> bytes to send before dropping the connection (once)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # a request is logged after its answer is sent
        self._in_flight = 0
        self._servers: list[_Listener] = []
        self._down = False

    # --- repos ------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, revisions: Mapping[str, Path | Mapping[str, Path | bytes]] | Path, *,
                 extra_files: Mapping[str, bytes] | None = None, private: bool = False,
                 gated: bool = False, access: Iterable[str] = ()) -> dict[str, str]:
        """Add a repo; returns {revision name: commit sha}. ``extra_files`` go into every commit."""
        if not isinstance(revisions, Mapping):
            revisions = {"main": revisions}
        commits: dict[str, dict[str, Blob]] = {}
        by_source: dict[Any, str] = {}
        refs: dict[str, str] = {}
        for name, source in revisions.items():
            key = str(Path(source).resolve()) if isinstance(source, Path) else id(source)
            if key in by_source and not _COMMIT_RE.fullmatch(name):
                refs[name] = by_source[key]
                continue
            files = self._files(source, extra_files or {})
            sha = name if _COMMIT_RE.fullmatch(name) else _commit_sha(repo_id, files)
            commits[sha] = files
            by_source.setdefault(key, sha)
            if not _COMMIT_RE.fullmatch(name):
                refs[name] = sha
        self.repos[repo_id] = Repo(repo_id, commits, refs, private=private, gated=gated, access=set(access))
        return {**{name: name for name in revisions if _COMMIT_RE.fullmatch(name)}, **refs}

    @staticmethod
    def _files(source: Path | Mapping[str, Path | bytes], extra: Mapping[str, bytes]) -> dict[str, Blob]:
        if isinstance(source, Path):
            items: dict[str, Path | bytes] = {p.relative_to(source).as_posix(): p
                                              for p in sorted(source.rglob("*")) if p.is_file()}
        else:
            items = dict(source)
        items.update(extra)
        return {name: Blob.of(name, data) for name, data in items.items()}

    def set_ref(self, repo_id: str, name: str, sha: str) -> None:
        self.repos[repo_id].refs[name] = sha

    # --- log helpers ------------------------------------------------------------------------
    def files_requested(self, method: str | None = None) -> set[str]:
        """Repo files that any resolve/CDN request (of ``method``, if given) concerned."""
        return {r.file for r in self.log if r.file is not None and (method is None or r.method == method)}

    def content_downloads(self) -> list[Request]:
        """Requests that transferred file bytes (GETs answered with content)."""
        return [r for r in self.log if r.downloads_content]

    def clear_log(self) -> None:
        """Forget the log, once every request already answered has been logged (the client
        may read an answer before the handler thread records it)."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=5)
            self.log.clear()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> HubServer:
        hub = _Listener(("127.0.0.1", 0), _Handler, self, "hub")
        self._servers.append(hub)
        if self.cdn:
            self._servers.append(_Listener(("127.0.0.1", 0), _Handler, self, "cdn"))
        for s in self._servers:
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._servers[-1].server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop listening and drop every open (keep-alive) connection: afterwards nothing answers."""
        self._down = True
        for s in self._servers:
            s.shutdown()
            s.server_close()
            s.drop_connections()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, entry: Request) -> None:
        with self._lock:
            self.log.append(entry)
        for hook in list(self.hooks):
            hook(entry)


def _commit_sha(repo_id: str, files: Mapping[str, Blob]) -> str:
    h = hashlib.sha1(repo_id.encode())
    for name in sorted(files):
        h.update(f"\0{name}\0{files[name].git_sha1}".encode())
    return h.hexdigest()


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (for "server down" tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, hub: HubServer, role: str):
        super().__init__(address, handler)
        self.hub = hub
        self.role = role
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Reply(Exception):
    """Answer with an error status, Hub style."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub; every answer carries Content-Length
    server: _Listener
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the hub keeps its own log
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    # ------------------------------------------------------------------------------------------
    def _serve(self, head: bool) -> None:
        hub = self.server.hub
        if hub._down:
            self.close_connection = True
            return
        self._file: str | None = None
        self._repo: str | None = None
        self._status: int | None = None
        with hub._idle:
            hub._in_flight += 1
        try:
            if self.server.role == "cdn":
                self._cdn(head)
            else:
                self._hub(head)
        except _Reply as reply:
            self._error(reply, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            auth = self.headers.get("Authorization", "")
            hub._record(Request(server=self.server.role, method=self.command, path=self.path,
                                repo=self._repo, file=self._file, range=self.headers.get("Range"),
                                token=auth.removeprefix("Bearer ") if auth else None,
                                status=self._status))
            with hub._idle:
                hub._in_flight -= 1
                hub._idle.notify_all()

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.server.hub.tokens:
            raise _Reply(401, "Invalid credentials in Authorization header")
        return token

    def _repo_for(self, repo_id: str, token: str | None) -> Repo:
        self._repo = repo_id
        repo = self.server.hub.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.access):
            if token is None:
                raise _Reply(401, "Invalid username or password.", "RepoNotFound")
            raise _Reply(404, "Repository not found", "RepoNotFound")
        return repo

    def _hub(self, head: bool) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        parts = url.path.split("/")  # raw segments: revisions arrive quoted with safe=""
        token = self._token()
        if len(parts) >= 5 and parts[1] == "api" and parts[2] == "models":
            repo = self._repo_for(f"{unquote(parts[3])}/{unquote(parts[4])}", token)
            rest = parts[5:]
            if not rest or rest == [""]:
                return self._info(repo, "main", query, head)
            if rest[0] == "revision" and len(rest) == 2:
                return self._info(repo, unquote(rest[1]), query, head)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, unquote(rest[1]), unquote("/".join(rest[2:])), query, head)
        elif len(parts) >= 6 and parts[3] == "resolve":
            repo = self._repo_for(f"{unquote(parts[1])}/{unquote(parts[2])}", token)
            return self._resolve(repo, unquote(parts[4]), unquote("/".join(parts[5:])), token, head)
        raise _Reply(404, "Sorry, we can't find the page you are looking for.")

    def _commit(self, repo: Repo, rev: str) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise _Reply(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    def _info(self, repo: Repo, rev: str, query: Mapping[str, list[str]], head: bool) -> None:
        sha = self._commit(repo, rev)
        files = repo.commits[sha]
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, blob in sorted(files.items()):
            entry: dict[str, Any] = {"rfilename": name}
            if blobs:
                entry.update(size=blob.size, blobId=blob.git_sha1)
                if blob.lfs:
                    entry["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": blob.pointer_size}
            siblings.append(entry)
        org = repo.repo_id.split("/")[0]
        doc = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "modelId": repo.repo_id, "author": org, "sha": sha, "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED, "private": repo.private,
            "gated": "manual" if repo.gated else False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": ["bitnet"], "library_name": "transformers", "siblings": siblings,
            "usedStorage": sum(b.size for b in files.values()),
        }
        self._json(doc, head, {"X-Repo-Commit": sha})

    def _tree(self, repo: Repo, rev: str, path: str, query: Mapping[str, list[str]], head: bool) -> None:
        sha = self._commit(repo, rev)
        files = repo.commits[sha]
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        if prefix and not any(n.startswith(prefix) for n in files):
            raise _Reply(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for name, blob in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):].split("/")
            for depth in range(1, len(rel)):
                d = prefix + "/".join(rel[:depth])
                if d not in dirs and (recursive or depth == 1):
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                                    "size": 0, "path": d})
            if len(rel) > 1 and not recursive:
                continue
            entry: dict[str, Any] = {"type": "file", "oid": blob.git_sha1, "size": blob.size, "path": name}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
            entries.append(entry)
        self._json(entries, head, {"X-Repo-Commit": sha})

    def _resolve(self, repo: Repo, rev: str, path: str, token: str | None, head: bool) -> None:
        self._file = path
        if repo.gated and token not in repo.access:
            page = f"{self.server.hub.url}/{repo.repo_id}"
            if token is None:
                raise _Reply(401, f"Access to model {repo.repo_id} is restricted. You must have access to it "
                             "and be authenticated to access it. Please log in.", "GatedRepo")
            raise _Reply(403, f"Access to model {repo.repo_id} is restricted and you are not in the "
                         f"authorized list. Visit {page} to ask for access.", "GatedRepo")
        sha = self._commit(repo, rev)
        blob = repo.commits[sha].get(path)
        if blob is None:
            raise _Reply(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size)})
            if self.server.hub.cdn:
                location = (f"{self.server.hub.cdn_url}/lfs/{blob.sha256}/{quote(path)}"
                            f"?repo={quote(repo.repo_id, safe='')}&commit={sha}&sig=local")
                body = f"Found. Redirecting to {location}".encode()
                return self._send(302, body, head, {**headers, "Location": location,
                                                    "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                                                    "Content-Type": "text/plain; charset=utf-8"})
        self._content(blob, path, head, {**headers, "ETag": f'"{blob.etag}"'})

    def _cdn(self, head: bool) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/")
        query = parse_qs(url.query)
        if len(parts) < 4 or parts[1] != "lfs":
            raise _Reply(404, "NoSuchKey")
        sha256, path = parts[2], unquote("/".join(parts[3:]))
        self._file = path
        self._repo = query.get("repo", [None])[0]
        for repo in self.server.hub.repos.values():
            for files in repo.commits.values():
                blob = files.get(path)
                if blob is not None and blob.sha256 == sha256:
                    return self._content(blob, path, head, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"})
        raise _Reply(404, "NoSuchKey")

    # --- answers --------------------------------------------------------------------------------
    def _content(self, blob: Blob, path: str, head: bool, headers: dict[str, str]) -> None:
        data = blob.read()
        status, start, end = 200, 0, len(data)
        header = self.headers.get("Range")
        if header and not head:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
            if m is None:
                raise _Reply(416, f"Unsupported range {header}", headers={"Content-Range": f"bytes */{len(data)}"})
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            if start >= len(data) or end <= start:
                raise _Reply(416, "Requested Range Not Satisfiable",
                             headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers.setdefault("Content-Type", "application/octet-stream")
        body = data[start:end]
        cut = None if head else self.server.hub.truncate.pop(path, None)
        self._send(status, body, head, headers, cut=cut)

    def _json(self, doc: Any, head: bool, headers: Mapping[str, str]) -> None:
        self._send(200, json.dumps(doc).encode(), head, {**headers, "Content-Type": "application/json"})

    def _error(self, reply: _Reply, head: bool) -> None:
        headers = {**reply.headers, "Content-Type": "application/json", "X-Error-Message": reply.message}
        if reply.code:
            headers["X-Error-Code"] = reply.code
        self._send(reply.status, json.dumps({"error": reply.message}).encode(), head, headers)

    def _send(self, status: int, body: bytes, head: bool, headers: Mapping[str, str], cut: int | None = None) -> None:
        """Answer; with ``cut``, announce the whole body, send ``cut`` bytes and drop the connection."""
        self._status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
