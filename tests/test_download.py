"""Tests for durgru_jax.data.download, against a local HTTP server (no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from durgru_jax.data import download as dl
from durgru_jax.data.download import (
    DATASETS,
    ChecksumError,
    DatasetNotFoundError,
    DatasetSpec,
    DownloadError,
    ensure_file,
)

SHARED_UDATA = Path(__file__).resolve().parents[1] / ".." / "shared/data/movielens-100k/u.data"
MEMBER = b"".join(b"%d\t%d\t%d\t%d\n" % (u, i, 3, 881250949 + u) for u in range(50) for i in (1, 2))


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ZIP = _zip({"ml-x/README": b"readme", "ml-x/u.data": MEMBER})


class _Server:
    """Serves ``routes[path] = body`` (or a callable(handler)) on 127.0.0.1; counts hits."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.hits: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.hits.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                elif callable(body):
                    body(self)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    s = _Server()
    yield s
    s.close()


def _spec(url: str, **kw) -> DatasetSpec:
    base = dict(
        name="toy",
        url=url,
        filename="ml-x/u.data",
        target="toy/u.data",
        sha256=_sha(MEMBER),
        archive="zip",
        archive_sha256=_sha(ZIP),
        licence="test",
    )
    base.update(kw)
    return DatasetSpec(**base)


def _leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_download_verify_extract_from_local_zip(server, tmp_path):
    server.routes["/ml-x.zip"] = ZIP
    spec = _spec(server.base + "/ml-x.zip")
    path = ensure_file("toy", tmp_path, spec=spec)
    assert path == tmp_path / "toy/u.data"
    assert path.read_bytes() == MEMBER
    assert _leftovers(tmp_path) == ["toy/u.data"]  # no archive, no .part files
    assert server.hits == ["/ml-x.zip"]
    # Second call: the file is there and verified; no request.
    assert ensure_file("toy", tmp_path, spec=spec) == path
    assert server.hits == ["/ml-x.zip"]


def test_member_found_by_name_when_the_archive_folder_differs(server, tmp_path):
    server.routes["/a.zip"] = ZIP
    spec = _spec(server.base + "/a.zip", filename="other-folder/u.data")
    assert ensure_file("toy", tmp_path, spec=spec).read_bytes() == MEMBER


def test_plain_file_and_tar_archive(server, tmp_path):
    server.routes["/u.data"] = MEMBER
    spec = _spec(server.base + "/u.data", archive=None, archive_sha256=None, filename="u.data")
    assert ensure_file("toy", tmp_path / "a", spec=spec).read_bytes() == MEMBER
    tgz = _tar({"dac/readme.txt": b"r", "dac/train.txt": MEMBER})
    server.routes["/dac.tar.gz"] = tgz
    spec = _spec(
        server.base + "/dac.tar.gz", archive="tar", archive_sha256=_sha(tgz), filename="train.txt"
    )
    assert ensure_file("toy", tmp_path / "b", spec=spec).read_bytes() == MEMBER
    assert _leftovers(tmp_path / "b") == ["toy/u.data"]


def test_file_url(tmp_path):
    src = tmp_path / "src" / "ml-x.zip"
    src.parent.mkdir()
    src.write_bytes(ZIP)
    spec = _spec(src.as_uri())
    assert ensure_file("toy", tmp_path / "d", spec=spec).read_bytes() == MEMBER


@pytest.mark.parametrize("which", ["archive", "member"])
def test_checksum_mismatch_leaves_nothing(server, tmp_path, which):
    server.routes["/ml-x.zip"] = ZIP
    wrong = "0" * 64
    kw = {"archive_sha256": wrong} if which == "archive" else {"sha256": wrong}
    spec = _spec(server.base + "/ml-x.zip", **kw)
    with pytest.raises(DownloadError) as e:
        ensure_file("toy", tmp_path, spec=spec)
    msg = str(e.value)
    assert wrong in msg and "does not match" in msg
    assert spec.url in msg and str(tmp_path / "toy/u.data") in msg
    assert isinstance(e.value.__cause__, ChecksumError)
    assert _leftovers(tmp_path) == []  # neither the file nor any .part


def test_server_dies_midway_leaves_nothing(server, tmp_path):
    def cut(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(ZIP)))
        handler.end_headers()
        handler.wfile.write(ZIP[: len(ZIP) // 2])
        handler.wfile.flush()
        handler.close_connection = True  # then the connection drops

    server.routes["/ml-x.zip"] = cut
    spec = _spec(server.base + "/ml-x.zip")
    with pytest.raises(DownloadError) as e:
        ensure_file("toy", tmp_path, spec=spec)
    assert spec.url in str(e.value) and str(tmp_path / "toy/u.data") in str(e.value)
    assert _leftovers(tmp_path) == []


def test_http_error_and_interrupt_leave_nothing(server, tmp_path, monkeypatch):
    spec = _spec(server.base + "/missing.zip")
    with pytest.raises(DownloadError, match="404"):
        ensure_file("toy", tmp_path, spec=spec)
    assert _leftovers(tmp_path) == []

    server.routes["/ml-x.zip"] = ZIP
    real_copy = dl._copy_hashing

    def interrupted(src, dest, total, what):
        Path(dest).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_copy_hashing", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ensure_file("toy", tmp_path, spec=_spec(server.base + "/ml-x.zip"))
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(dl, "_copy_hashing", real_copy)


def test_unknown_checksum_downloads_with_a_warning(server, tmp_path):
    server.routes["/ml-x.zip"] = ZIP
    spec = _spec(server.base + "/ml-x.zip", sha256=None, archive_sha256=None)
    assert ensure_file("toy", tmp_path, spec=spec).read_bytes() == MEMBER


@pytest.mark.parametrize("name", [n for n, s in DATASETS.items() if not s.downloadable])
def test_manual_datasets_say_what_to_fetch_and_where(tmp_path, name):
    spec = DATASETS[name]
    with pytest.raises(DatasetNotFoundError) as e:
        ensure_file(name, tmp_path)
    msg = str(e.value)
    assert spec.url in msg
    assert str(tmp_path / spec.target) in msg
    assert repr(spec.filename) in msg
    assert _leftovers(tmp_path) == []


def test_download_switched_off(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        ensure_file("ml100k", tmp_path, allow_download=False)
    msg = str(e.value)
    assert DATASETS["ml100k"].url in msg and str(tmp_path / "ml-100k/u.data") in msg
    assert "switched off" in msg


def test_existing_good_file_is_not_downloaded(server, tmp_path):
    spec = _spec(server.base + "/ml-x.zip")  # the route does not exist: a fetch would fail
    target = tmp_path / spec.target
    target.parent.mkdir(parents=True)
    target.write_bytes(MEMBER)
    assert ensure_file("toy", tmp_path, spec=spec) == target
    assert server.hits == []
    # Also at a user-given path.
    other = tmp_path / "elsewhere.data"
    other.write_bytes(MEMBER)
    assert ensure_file("toy", tmp_path, spec=spec, path=other) == other
    assert server.hits == []


def test_existing_bad_file_is_an_error_naming_both_checksums(tmp_path):
    spec = _spec("http://127.0.0.1:9/never")
    target = tmp_path / spec.target
    target.parent.mkdir(parents=True)
    target.write_bytes(MEMBER + b"extra\n")
    with pytest.raises(ChecksumError) as e:
        ensure_file("toy", tmp_path, spec=spec)
    msg = str(e.value)
    assert spec.sha256 in msg and _sha(MEMBER + b"extra\n") in msg and str(target) in msg
    assert target.read_bytes() == MEMBER + b"extra\n"  # never deleted behind the user's back
    assert ensure_file("toy", tmp_path, spec=spec, verify=False) == target
    # Size-only verification when no checksum is known.
    sized = dataclasses.replace(spec, sha256=None, size=len(MEMBER))
    with pytest.raises(ChecksumError, match="bytes"):
        ensure_file("toy", tmp_path, spec=sized)


def test_archive_siblings_are_extracted_once(server, tmp_path, monkeypatch):
    z = _zip({"K/data/small.csv": b"s\n", "K/data/big.csv": b"b\n"})
    server.routes["/K.zip"] = z
    url = server.base + "/K.zip"
    common = dict(url=url, archive="zip", archive_sha256=_sha(z), licence="t")
    small = DatasetSpec(
        name="k_small", filename="K/data/small.csv", target="k/small.csv", sha256=None, **common
    )
    big = DatasetSpec(
        name="k_big", filename="K/data/big.csv", target="k/big.csv", sha256=_sha(b"b\n"), **common
    )
    monkeypatch.setattr(dl, "DATASETS", {"k_small": small, "k_big": big})
    assert ensure_file("k_small", tmp_path).read_bytes() == b"s\n"
    assert (tmp_path / "k/big.csv").read_bytes() == b"b\n"
    assert ensure_file("k_big", tmp_path).read_bytes() == b"b\n"
    assert server.hits == ["/K.zip"]
    assert _leftovers(tmp_path) == ["k/big.csv", "k/small.csv"]


def test_registry_is_complete_and_consistent():
    required = {
        "ml100k", "ml1m", "ml20m", "ml25m", "ml32m", "taobao", "tianchi", "yoochoose",
        "diginetica", "kuairec", "criteo",
    }  # fmt: skip
    assert required <= set(DATASETS)
    for name, s in DATASETS.items():
        assert s.name == name
        assert s.url.startswith("https://"), name
        assert not os.path.isabs(s.target) and ".." not in s.target, name
        assert s.licence, name
        for h in (s.sha256, s.archive_sha256):
            assert h is None or (len(h) == 64 and int(h, 16) >= 0), name
        if s.downloadable:
            assert s.archive in (None, "zip", "tar"), name
        else:
            assert s.manual, name
    assert DATASETS["ml100k"].sha256 == (
        "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
    )
    for name in ("taobao", "tianchi", "diginetica", "criteo", "yoochoose"):
        assert not DATASETS[name].downloadable, name
    for name in ("ml100k", "ml1m", "ml20m", "ml25m", "ml32m", "kuairec"):
        assert DATASETS[name].downloadable, name
    # The configs' default paths are where ensure_file expects the files.
    assert DATASETS["ml100k"].target == "ml-100k/u.data"
    assert DATASETS["ml1m"].target == "ml-1m/ratings.dat"


def test_unknown_dataset():
    with pytest.raises(KeyError, match="known: ml100k"):
        ensure_file("nope", "/nonexistent")


def test_cli(tmp_path, capsys):
    assert dl.main(["--list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "taobao" in out and "manual" in out and str(tmp_path / "ml-100k/u.data") in out
    assert dl.main(["taobao", "--data-dir", str(tmp_path)]) == 1
    assert "tianchi.aliyun.com" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_UDATA.is_file(), reason="../shared/data is absent")
def test_shared_ml100k_matches_the_registry_checksum(tmp_path):
    target = tmp_path / "ml-100k" / "u.data"
    target.parent.mkdir()
    os.symlink(SHARED_UDATA.resolve(), target)
    assert ensure_file("ml100k", tmp_path, allow_download=False) == target
