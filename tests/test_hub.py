"""Hub sources (bitpack.containers.hub) against a local Hub stand-in (tests/hub_server.py).

Every test runs with an isolated huggingface_hub cache (HF_HOME/HF_HUB_CACHE in tmp_path),
HF_ENDPOINT pointing at the local server, no token, and a guard that fails the test if anything
resolves a host other than 127.0.0.1: nothing here touches the real network.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from hub_server import HubServer, free_port
from huggingface_hub import HfApi, constants, snapshot_download

import bitpack
from bitpack import ConvertOptions
from bitpack.containers.gguf_read import GGUFFile
from bitpack.containers.hub import HubSnapshot, fetch, parse_repo_id
from bitpack.errors import BitpackError

ROOT = Path(__file__).resolve().parents[1]
PACKED = ROOT / "fixtures" / "models" / "b158-packed"
SHARDED = ROOT / "fixtures" / "models" / "bitnet-f32-sharded"
USER_TOKEN = "hf_user_token"  # may read org/private, accepted org/gated's terms
OTHER_TOKEN = "hf_other_token"  # a valid account without access to either
NOT_NEEDED = {"pytorch_model.bin": b"\x80\x02pickle" * 64, "original/consolidated.pth": b"PK" * 300,
              "assets/diagram.png": b"\x89PNG" * 50, "README.md": b"# a model card\n"}
PACKED_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json"}
SHARDED_FILES = {"config.json", "generation_config.json", "model.safetensors.index.json",
                 "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                 "tokenizer.model", "tokenizer_config.json"}


# --- environment ---------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated_hf(tmp_path, monkeypatch):
    """A fresh huggingface_hub cache and no credentials, offline flag or foreign endpoint."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                "HF_OIDC_RESOURCE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    # Read by huggingface_hub at import time: never a saved login, never offline unless a test says so.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # Building request headers looks up an "agent harness" registry at constants.ENDPOINT (the real
    # Hub unless HF_ENDPOINT was set before import); give it an empty one.
    from huggingface_hub.utils import _detect_agent
    monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}}, raising=False)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail the test if anything tries to resolve a host other than the loopback address."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            attempts.append(str(host))
            raise socket.gaierror(f"test_hub: no network beyond 127.0.0.1 (tried {host})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert not attempts, f"tried to reach {attempts}"


@pytest.fixture(scope="session")
def packed_i2s(tmp_path_factory) -> Path:
    """The local fixture converted to I2_S: the GGUF-only repo's file and the end-to-end reference."""
    out = tmp_path_factory.mktemp("i2s") / "b158-packed-i2_s.gguf"
    bitpack.convert(PACKED, "i2_s", ConvertOptions(output=out, receipt=False))
    return out


@pytest.fixture
def hub(monkeypatch, packed_i2s):
    server = HubServer(tokens=(USER_TOKEN, OTHER_TOKEN)).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    server.shas = {
        "org/packed": server.add_repo("org/packed", PACKED, extra_files=NOT_NEEDED),
        "org/sharded": server.add_repo("org/sharded", SHARDED, extra_files={
            **NOT_NEEDED, "model-00003-of-00003.safetensors": b"stale shard of an old upload"}),
        "org/gguf": server.add_repo("org/gguf", {"main": {"b158-packed-i2_s.gguf": packed_i2s}},
                                    extra_files=NOT_NEEDED),
        "org/private": server.add_repo("org/private", PACKED, private=True, access={USER_TOKEN}),
        "org/gated": server.add_repo("org/gated", PACKED, gated=True, access={USER_TOKEN}),
    }
    yield server
    server.stop()


def cache_dir(tmp_path) -> Path:
    return tmp_path / "hf_cache"


def assert_same_bytes(snapshot: HubSnapshot, folder: Path, names: set[str]) -> None:
    assert {p.relative_to(snapshot.path).as_posix() for p in snapshot.files} == names
    for p in snapshot.files:
        assert p.read_bytes() == (folder / p.relative_to(snapshot.path)).read_bytes(), p.name


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message
    assert excinfo.value.exit_code == 2
    return message


# --- parse_repo_id ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("microsoft/bitnet-b1.58-2B-4T", ("microsoft/bitnet-b1.58-2B-4T", None)),
    ("1bitLLM/bitnet_b1_58-large@main", ("1bitLLM/bitnet_b1_58-large", "main")),
    ("org/name@v1.0", ("org/name", "v1.0")),
    ("org/name@refs/pr/12", ("org/name", "refs/pr/12")),
    ("HF1BitLLM/Llama3-8B-1.58-100B-tokens@" + "a" * 40, ("HF1BitLLM/Llama3-8B-1.58-100B-tokens", "a" * 40)),
    ("org/name", ("org/name", None)),
    ("name", None),  # no namespace: bitpack asks for org/name
    ("a/b/c", None),
    ("org/name/", None),
    ("/abs/path", None),
    ("./org/name", None),
    ("../org/name", None),
    (".org/name", None),
    ("~/models/x", None),
    ("org/model.gguf", None),
    ("org/model.safetensors", None),
    ("org/config.json", None),
    ("org/name.GGUF", None),
    ("org/na me", None),
    ("org/name!", None),
    ("org/na--me", None),
    ("org/na..me", None),
    ("org/-name", None),
    ("org/name.git", None),
    ("org/café", None),
    ("org/name@", None),
    ("org/name@a@b", None),
    ("org/name@bad..rev", None),
    ("org/name@bad rev", None),
    ("org/name@/main", None),
    ("", None),
    (" org/name", None),
    ("C:/models/x", None),
    ("org\\name", None),
])
def test_parse_repo_id(text, expected):
    assert parse_repo_id(text) == expected


def test_parse_repo_id_local_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_repo_id("org/name") == ("org/name", None)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert parse_repo_id("org/name") is None
    assert parse_repo_id("org/name@v1") is None


# --- fetching ------------------------------------------------------------------------------------------

def test_fetch_downloads_only_what_bitpack_reads(hub, tmp_path):
    snap = fetch("org/packed", progress=False)
    assert snap.repo == "org/packed" and snap.revision == "main"
    assert snap.commit == hub.shas["org/packed"]["main"]
    assert snap.source == snap.path
    assert snap.path == cache_dir(tmp_path) / "models--org--packed" / "snapshots" / snap.commit
    assert snap.files[0].name == "config.json"
    assert_same_bytes(snap, PACKED, PACKED_FILES)
    assert hub.files_requested() == PACKED_FILES  # never pytorch_model.bin, original/, README, images
    # Every file request is pinned to the commit, not to "main".
    file_requests = [r for r in hub.log if r.server == "hub" and r.file]
    assert file_requests and all(f"/resolve/{snap.commit}/" in r.path for r in file_requests)
    assert not any("xet" in r.path.lower() for r in hub.log)


def test_fetch_sharded_gets_exactly_the_indexed_shards(hub):
    snap = fetch("org/sharded", progress=False)
    assert_same_bytes(snap, SHARDED, SHARDED_FILES)
    assert hub.files_requested() == SHARDED_FILES  # not the stale shard 3, not the .pth


def test_revisions_resolve_to_their_commits(hub, tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    tweaked = {p.name: p for p in PACKED.iterdir()} | {"tokenizer_config.json": b'{"tweaked": true}'}
    shas = hub.add_repo("org/multi", {"main": SHARDED, "v1": PACKED, sha: tweaked})
    main, v1, pinned = fetch("org/multi", progress=False), fetch("org/multi", "v1", progress=False), \
        fetch("org/multi", sha, progress=False)
    assert (main.revision, main.commit) == ("main", shas["main"])
    assert (v1.revision, v1.commit) == ("v1", shas["v1"])
    assert (pinned.revision, pinned.commit) == (sha, sha)
    assert len({main.commit, v1.commit, sha}) == 3
    assert_same_bytes(main, SHARDED, SHARDED_FILES)
    assert_same_bytes(v1, PACKED, PACKED_FILES)
    assert (pinned.path / "tokenizer_config.json").read_bytes() == b'{"tweaked": true}'
    refs = cache_dir(tmp_path) / "models--org--multi" / "refs"
    assert (refs / "main").read_text() == shas["main"] and (refs / "v1").read_text() == shas["v1"]


def test_a_branch_moving_mid_download_does_not_mix_commits(hub):
    new = hub.add_repo("org/moving", {"main": PACKED, "next": {
        **{p.name: p for p in PACKED.iterdir()}, "model.safetensors": b"new weights"}})

    def move(request):  # right after the revision was looked up, main moves on
        if request.repo == "org/moving":
            hub.set_ref("org/moving", "main", new["next"])
    hub.hooks.append(move)
    snap = fetch("org/moving", progress=False)
    assert hub.repos["org/moving"].refs["main"] == new["next"]
    assert snap.commit == new["main"]
    assert_same_bytes(snap, PACKED, PACKED_FILES)


def test_compression_config_comes_along(hub):
    hub.add_repo("org/stack", {"main": {**{p.name: p for p in PACKED.iterdir()},
                                        "compression_config.json": b'{"bitstack": 1}'}})
    snap = fetch("org/stack", progress=False)
    assert (snap.path / "compression_config.json").read_bytes() == b'{"bitstack": 1}'
    assert snap.path / "compression_config.json" in snap.files


def test_cache_location_follows_hf_home_at_call_time(hub, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    snap = fetch("org/packed", progress=False)
    assert snap.path.is_relative_to(tmp_path / "elsewhere" / "hub")


def test_second_fetch_is_served_from_the_cache(hub):
    first = fetch("org/sharded", progress=False)
    hub.clear_log()
    second = fetch("org/sharded", progress=False)
    assert second == first
    assert hub.content_downloads() == []
    assert all(r.path.startswith("/api/models/") for r in hub.log)  # only the revision look-up


def test_offline_uses_the_cache_without_network(hub, monkeypatch):
    online = {rev: fetch("org/packed", rev, progress=False) for rev in (None, hub.shas["org/packed"]["main"])}
    sharded = fetch("org/sharded", progress=False)
    gguf = fetch("org/gguf", progress=False)
    hub.stop()
    hub.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch("org/packed", progress=False) == online[None]
    assert fetch("org/packed", hub.shas["org/packed"]["main"], progress=False) == online[hub.shas["org/packed"]["main"]]
    assert fetch("org/sharded", progress=False) == sharded
    assert fetch("org/gguf", progress=False) == gguf
    # As huggingface_hub itself sees it when HF_HUB_OFFLINE=1 was set before it was imported.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fetch("org/sharded", progress=False) == sharded
    assert hub.log == []


def test_offline_without_the_files_fails_in_one_line(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for rev in (None, "0123456789abcdef0123456789abcdef01234567"):
        with pytest.raises(BitpackError) as e:
            fetch("org/packed", rev, progress=False)
        msg = one_line_error(e)
        assert "HF_HUB_OFFLINE" in msg and "in the cache" in msg and str(cache_dir(tmp_path)) in msg
    assert hub.log == []
    # A snapshot that lost a shard (interrupted, cleaned up) is refused, naming the shard.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    snap = fetch("org/sharded", progress=False)
    (snap.path / "model-00002-of-00002.safetensors").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BitpackError) as e:
        fetch("org/sharded", progress=False)
    msg = one_line_error(e)
    assert "not fully in the cache" in msg and "model-00002-of-00002.safetensors" in msg


def test_gguf_only_repo_gives_its_gguf(hub, packed_i2s):
    snap = fetch("org/gguf", progress=False)
    assert snap.source == snap.path / "b158-packed-i2_s.gguf"
    assert snap.files == [snap.source]
    assert snap.source.read_bytes() == packed_i2s.read_bytes()
    assert hub.files_requested() == {"b158-packed-i2_s.gguf"}


def test_several_ggufs_are_listed_not_guessed(hub, packed_i2s):
    hub.add_repo("org/ggufs", {"main": {"m-i2_s.gguf": packed_i2s, "m-tq2_0.gguf": b"GGUF..."}})
    with pytest.raises(BitpackError) as e:
        fetch("org/ggufs", progress=False)
    msg = one_line_error(e)
    assert "m-i2_s.gguf, m-tq2_0.gguf" in msg and "choose one as org/ggufs:FILE, e.g. org/ggufs:m-i2_s.gguf" in msg
    assert hub.content_downloads() == []


def test_one_gguf_of_several_is_chosen_by_name(hub, packed_i2s, tmp_path):
    """Prism's -gguf repos hold F16 and Q2_0 files: org/name[@rev]:FILE downloads that one."""
    hub.add_repo("org/ggufs", {"main": {"m-i2_s.gguf": packed_i2s, "m-tq2_0.gguf": b"GGUF..."}})
    report = bitpack.convert("org/ggufs:m-i2_s.gguf", "tq2_0",
                             ConvertOptions(output=tmp_path / "o.gguf", show_downloads=False,
                                            allow_scale_rounding=True))
    assert hub.files_requested() == {"m-i2_s.gguf"}  # the other file is never fetched
    assert report["source"]["file"] == "m-i2_s.gguf" and report["source"]["repo"] == "org/ggufs"
    with pytest.raises(BitpackError) as e:
        bitpack.convert("org/ggufs@main:nope.gguf", "tq2_0", ConvertOptions(output=tmp_path / "x.gguf"))
    msg = one_line_error(e)
    assert "has no file nope.gguf; its GGUF files: m-i2_s.gguf, m-tq2_0.gguf" in msg


def test_private_repo_needs_a_token(hub, monkeypatch):
    with pytest.raises(BitpackError) as e:
        fetch("org/private", progress=False)
    msg = one_line_error(e)
    assert "org/private" in msg and "HF_TOKEN" in msg and "private" in msg
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    hub.clear_log()
    snap = fetch("org/private", progress=False)
    assert_same_bytes(snap, PACKED, PACKED_FILES)
    assert all(r.token == USER_TOKEN for r in hub.log if r.server == "hub"), [r for r in hub.log if r.token != USER_TOKEN]
    assert all(r.token is None for r in hub.log if r.server == "cdn")  # never sent off the Hub


def test_token_argument_overrides_the_environment(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)
    snap = fetch("org/private", progress=False, token=USER_TOKEN)
    assert snap.commit == hub.shas["org/private"]["main"]


def test_gated_repo(hub, monkeypatch):
    with pytest.raises(BitpackError) as e:
        fetch("org/gated", progress=False)
    msg = one_line_error(e)
    assert "gated" in msg and "accept" in msg and f"{hub.url}/org/gated" in msg and "HF_TOKEN" in msg
    monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)
    with pytest.raises(BitpackError) as e:
        fetch("org/gated", progress=False)
    msg = one_line_error(e)
    assert "not been granted" in msg and f"{hub.url}/org/gated" in msg
    assert hub.content_downloads() == []
    monkeypatch.setenv("HF_TOKEN", USER_TOKEN)
    assert_same_bytes(fetch("org/gated", progress=False), PACKED, PACKED_FILES)


def test_invalid_token(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_revoked")
    with pytest.raises(BitpackError) as e:
        fetch("org/packed", progress=False)
    msg = one_line_error(e)
    assert "rejected the access token" in msg and "HF_TOKEN" in msg


def test_missing_repo(hub):
    with pytest.raises(BitpackError) as e:
        fetch("org/nope", progress=False)
    msg = one_line_error(e)
    assert "org/nope" in msg and "no such model repo" in msg and hub.url in msg and "HF_TOKEN" in msg


def test_wrong_revision(hub):
    with pytest.raises(BitpackError) as e:
        fetch("org/packed", "v9", progress=False)
    msg = one_line_error(e)
    assert "revision 'v9' not found" in msg and "org/packed" in msg


def test_shard_named_in_index_but_missing(hub):
    files = {p.name: p for p in SHARDED.iterdir() if p.name != "model-00002-of-00002.safetensors"}
    sha = hub.add_repo("org/broken", {"main": files})["main"]
    with pytest.raises(BitpackError) as e:
        fetch("org/broken", progress=False)
    msg = one_line_error(e)
    assert "model.safetensors.index.json" in msg and "model-00002-of-00002.safetensors" in msg and sha in msg
    # Refused before any weights were downloaded.
    assert hub.files_requested() == {"model.safetensors.index.json"}


def test_repo_without_config_or_gguf(hub):
    hub.add_repo("org/pickles", {"main": {"pytorch_model.bin": b"x", "README.md": b"hi"}})
    with pytest.raises(BitpackError) as e:
        fetch("org/pickles", progress=False)
    msg = one_line_error(e)
    assert "neither config.json" in msg and ".gguf" in msg
    hub.add_repo("org/binonly", {"main": {"config.json": b"{}", "pytorch_model.bin": b"x"}})
    with pytest.raises(BitpackError) as e:
        fetch("org/binonly", progress=False)
    msg = one_line_error(e)
    assert "no .safetensors weights" in msg and "pytorch_model.bin" in msg
    assert hub.content_downloads() == []


def test_server_down(monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(BitpackError) as e:
        fetch("org/packed", progress=False)
    msg = one_line_error(e)
    assert f"cannot reach {endpoint}" in msg and "HF_HUB_OFFLINE" in msg


def test_endpoint_that_is_not_a_hub(tmp_path, monkeypatch):
    page = tmp_path / "www" / "api" / "models" / "org" / "packed" / "revision" / "main"
    page.parent.mkdir(parents=True)
    page.write_text("<html>corporate proxy login</html>")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(tmp_path / "www"))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as www:
        threading.Thread(target=www.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{www.server_address[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        try:
            with pytest.raises(BitpackError) as e:
                fetch("org/packed", progress=False)
        finally:
            www.shutdown()
    msg = one_line_error(e)
    assert f"{endpoint} does not answer like a Hugging Face Hub" in msg and "HF_ENDPOINT" in msg


def test_interrupted_download_resumes_with_range(hub, monkeypatch):
    # huggingface_hub resumes from the last whole chunk it wrote (10 MiB); make chunks small.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.truncate["model.safetensors"] = 100_000  # the first GET drops the connection after 100 kB
    snap = fetch("org/packed", progress=False)
    assert_same_bytes(snap, PACKED, PACKED_FILES)
    gets = [r for r in hub.log if r.file == "model.safetensors" and r.method == "GET"]
    assert [(g.range, g.status) for g in gets] == [(None, 200), ("bytes=65536-", 206)]


def test_progress_false_prints_nothing(hub, capfd):
    fetch("org/sharded", progress=False)
    assert capfd.readouterr() == ("", "")
    fetch("org/packed", progress=True)  # bars go to stderr only (and only on a terminal)
    assert capfd.readouterr().out == ""


def test_fetched_snapshot_converts_like_the_local_fixture(hub, tmp_path, packed_i2s):
    snap = fetch("org/packed", progress=False)
    out = tmp_path / "from-hub.gguf"
    bitpack.convert(snap.source, "i2_s", ConvertOptions(output=out, receipt=False))
    with GGUFFile(out) as got, GGUFFile(packed_i2s) as want:
        # The only differences name the source: its folder (here the commit sha) and its path.
        naming = {"general.name", "bitpack.source"}

        def kv(f):
            return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in f.kv.items() if k not in naming}
        assert kv(got) == kv(want)
        assert [t.name for t in got.tensors] == [t.name for t in want.tensors]
        for t in want.tensors:
            assert got.raw(t.name).tobytes() == want.raw(t.name).tobytes(), t.name
    # And the files it read are byte for byte the fixture's.
    assert hashlib.sha256((snap.path / "model.safetensors").read_bytes()).digest() == \
        hashlib.sha256((PACKED / "model.safetensors").read_bytes()).digest()


def test_fetched_sharded_snapshot_converts(hub, tmp_path):
    snap = fetch("org/sharded", progress=False)
    bitpack.convert(snap.source, "tq2_0", ConvertOptions(output=tmp_path / "s.gguf", receipt=False))


# --- the stand-in speaks the Hub's protocol ----------------------------------------------------------

def test_server_repo_info_tree_and_snapshot_download(hub, tmp_path):
    api = HfApi(endpoint=hub.url)
    info = api.model_info("org/sharded", files_metadata=True)
    assert info.sha == hub.shas["org/sharded"]["main"] and info.gated is False
    sib = {s.rfilename: s for s in info.siblings}
    shard = SHARDED / "model-00002-of-00002.safetensors"
    assert sib[shard.name].size == shard.stat().st_size
    assert sib[shard.name].lfs.sha256 == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert sib["config.json"].lfs is None
    assert api.model_info("org/gated").gated == "manual"
    tree = {f.path: f for f in api.list_repo_tree("org/sharded", recursive=True)}
    assert {"original", "original/consolidated.pth", "config.json"} <= set(tree)
    assert tree[shard.name].lfs.sha256 == sib[shard.name].lfs.sha256
    assert "original/consolidated.pth" not in {f.path for f in api.list_repo_tree("org/sharded")}
    folder = snapshot_download("org/sharded", allow_patterns=["*.json"], endpoint=hub.url,
                               cache_dir=tmp_path / "sd")
    assert sorted(p.name for p in Path(folder).iterdir()) == sorted(
        n for n in SHARDED_FILES if n.endswith(".json"))


def test_server_ranges_and_direct_lfs(monkeypatch, tmp_path):
    with HubServer(cdn=False) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        sha = server.add_repo("org/packed", PACKED)["main"]
        url = f"{server.url}/org/packed/resolve/main/model.safetensors"
        data = (PACKED / "model.safetensors").read_bytes()
        r = httpx2.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert httpx2.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        head = httpx2.head(url)
        assert head.headers["ETag"].strip('"') == hashlib.sha256(data).hexdigest()
        assert head.headers["X-Linked-Size"] == str(len(data)) and head.headers["X-Repo-Commit"] == sha
        assert "X-Xet-Hash" not in head.headers
        snap = fetch("org/packed", progress=False)  # LFS files served by the Hub itself, no CDN hop
        assert_same_bytes(snap, PACKED, PACKED_FILES)


# --- convert from the Hub: receipts and the degenerate-revision refusal ------------------------------

def broken_copy(tmp_path: Path) -> Path:
    """The packed fixture with layer 0's MLP all zero, as microsoft/BitNet#608's "Update Model" commit."""
    import shutil

    from bitpack.containers.safetensors_read import SafetensorsFile

    folder = tmp_path / "broken"
    shutil.copytree(PACKED, folder)
    names = [f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    with SafetensorsFile(folder / "model.safetensors") as f:
        spans = [(f.info(n).offset, f.info(n).nbytes) for n in names]
    with open(folder / "model.safetensors", "r+b") as fh:
        for offset, nbytes in spans:
            fh.seek(offset)
            fh.write(b"\x55" * nbytes)
    return folder


def test_convert_from_the_hub_records_repo_revision_and_commit_in_the_receipt(hub, tmp_path):
    import json

    out = tmp_path / "m.gguf"
    report = bitpack.convert("org/packed@main", "i2_s", ConvertOptions(output=out, show_downloads=False))
    sha = hub.shas["org/packed"]["main"]
    assert {k: report["source"][k] for k in ("repo", "revision", "commit")} == \
        {"repo": "org/packed", "revision": "main", "commit": sha}
    receipt = json.loads(Path(report["receipt"]).read_text())
    assert receipt["source"]["repo"] == "org/packed" and receipt["source"]["commit"] == sha
    assert {Path(i["path"]).name for i in receipt["inputs"]} == PACKED_FILES
    for i in receipt["inputs"]:
        assert i["sha256"] == hashlib.sha256((PACKED / Path(i["path"]).name).read_bytes()).hexdigest()
    assert GGUFFile(out).kv["general.name"] == "packed"


def test_a_degenerate_hub_revision_is_refused_suggesting_another(hub, tmp_path):
    shas = hub.add_repo("org/bitnet", {"main": broken_copy(tmp_path), "april": PACKED})
    out = tmp_path / "m.gguf"
    with pytest.raises(BitpackError, match=r"3 degenerate ternary projections .*blk\.0\.ffn_gate\.weight: every "
                                           r"weight is zero.*earlier revision \(--revision REV, or org/name@REV\)"):
        bitpack.convert("org/bitnet", "i2_s", ConvertOptions(output=out, show_downloads=False))
    assert not out.exists()
    report = bitpack.convert("org/bitnet", "i2_s", ConvertOptions(output=out, revision="april", show_downloads=False))
    assert report["source"]["commit"] == shas["april"] and out.is_file()


def test_cli_convert_from_the_hub_prints_only_json_and_exit_codes(hub, tmp_path):
    # A real process on purpose (the other CLI tests run in-process): huggingface_hub reads its
    # environment when it is imported, and this is the one test of a process started with it set.
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run([sys.executable, "-m", "bitpack.cli", "convert", "org/packed", "--to", "tq2_0",
                           "-o", str(tmp_path / "m.gguf"), "--json"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["commit"] == hub.shas["org/packed"]["main"]
    missing = subprocess.run([sys.executable, "-m", "bitpack.cli", "convert", "org/nope", "--to", "tq2_0"],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("bitpack: error:")
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
