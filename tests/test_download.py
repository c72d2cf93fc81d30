"""The asset registry and the downloader, against a loopback HTTP server: nothing here
touches the internet."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from course_utils import download as dl
from course_utils.download import Asset, ChecksumError, DownloadError, OfflineError, UnsafeArchiveError


# --------------------------------------------------------------------------- a loopback server

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and server.honor_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_after is not None:  # send a little, then hang up (once)
            body, server.drop_after = body[:server.drop_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.honor_range, httpd.drop_after = {}, [], True, None
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def data(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("COURSE_DATA_DIR", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no real hub cache
    return folder


def _tar(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, payload in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


PAYLOAD = _tar({"pack/README.txt": b"hello\n", "pack/sub/data.bin": bytes(range(256)) * 200})
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _register(monkeypatch, server, *, name="test-pack", data=PAYLOAD, sha256=PAYLOAD_SHA, extract=True, **kw):
    server.files[f"/{name}.tar"] = data
    asset = Asset(name=name, url=f"{server.url}/{name}.tar", filename=f"{name}.tar", description="a test archive",
                  sha256=sha256, extract_to=name if extract else None, **kw)
    monkeypatch.setitem(dl.ASSETS, name, asset)
    return asset


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.tar"


# --------------------------------------------------------------------------- the registry

def test_registry_entries_are_complete():
    for name, asset in dl.ASSETS.items():
        assert asset.name == name and asset.description and asset.filename
        assert asset.url or asset.url_env, name
        if asset.extract_to is None and asset.fetcher is None:
            assert asset.sha256 or asset.sha256_prefix or asset.md5, f"{name} cannot be verified"


def test_weights_are_torchvisions_and_file_names_carry_the_hash_prefix():
    from torchvision.models import ResNet50_Weights

    for version in ("v1", "v2"):
        asset = dl.ASSETS[f"resnet50-imagenet1k-{version}"]
        assert asset.url == ResNet50_Weights[f"IMAGENET1K_{version.upper()}"].url
        assert asset.filename == asset.url.rsplit("/", 1)[1] == f"resnet50-{asset.sha256_prefix}.pth"


def test_subset_is_configured_by_environment(monkeypatch, data):
    monkeypatch.delenv(dl.SUBSET_URL_ENV, raising=False)
    assert dl.imagenet_a_asset_name() == "imagenet-a"
    with pytest.raises(DownloadError, match=dl.SUBSET_URL_ENV):
        dl.fetch("imagenet-a-subset")
    monkeypatch.setenv(dl.SUBSET_URL_ENV, "http://example.invalid/s.tar")
    monkeypatch.setenv(dl.SUBSET_SHA256_ENV, "ab" * 32)
    asset = dl.get_asset("imagenet-a-subset")
    assert (asset.url, asset.sha256) == ("http://example.invalid/s.tar", "ab" * 32)
    assert dl.default_assets() == ("cifar10", "resnet50-imagenet1k-v1", "imagenet-a-subset")
    assert asset.path == data / "imagenet-a-subset"


def test_cifar10_is_fetched_through_the_notebooks_loader(monkeypatch, data):
    import course_utils.data

    calls = []
    monkeypatch.setattr(course_utils.data, "load_cifar10", lambda split: calls.append(split))
    assert dl.fetch("cifar10", progress=False) == data / "cifar10" and calls == ["test"]


def test_describe_assets_lists_every_asset(data):
    table = dl.describe_assets()
    assert str(data) in table and all(name in table for name in dl.ASSETS)


# --------------------------------------------------------------------------- downloads

def test_complete_transfer_extracts_and_marks_completion(monkeypatch, server, data):
    _register(monkeypatch, server)
    folder = dl.fetch("test-pack", progress=False)
    assert folder == data / "test-pack" and dl.is_complete(folder)
    assert (folder / "pack" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 200
    assert not (data / "downloads" / "test-pack.tar").exists()  # archive removed after extraction
    assert not list(data.glob(".test-pack.partial-*"))
    served = len(server.requests)
    assert dl.fetch("test-pack", progress=False) == folder and len(server.requests) == served  # cached


def test_plain_file_is_downloaded_once(monkeypatch, server, data):
    _register(monkeypatch, server, extract=False, subdir="weights")
    path = dl.fetch("test-pack", progress=False)
    assert path == data / "weights" / "test-pack.tar" and path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()


def test_partial_file_is_resumed_with_a_range_request(monkeypatch, server, data):
    _register(monkeypatch, server, extract=False)
    part = data / "downloads" / "test-pack.tar.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:5000])
    assert dl.fetch("test-pack", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/test-pack.tar", "bytes=5000-")]


def test_dropped_connection_is_resumed_within_one_call(monkeypatch, server):
    _register(monkeypatch, server, extract=False)
    server.drop_after = 3000
    assert dl.fetch("test-pack", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/test-pack.tar", None), ("/test-pack.tar", "bytes=3000-")]


def test_stale_partial_file_of_another_download_is_discarded(monkeypatch, server, data, capsys):
    _register(monkeypatch, server, extract=False)
    part = data / "downloads" / "test-pack.tar.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)  # same length as a real prefix, wrong bytes
    assert dl.fetch("test-pack", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("/test-pack.tar", "bytes=5000-"), ("/test-pack.tar", None)]
    assert "afresh" in capsys.readouterr().out


def test_server_ignoring_range_restarts_from_scratch(monkeypatch, server, data):
    _register(monkeypatch, server, extract=False)
    server.honor_range = False
    part = data / "downloads" / "test-pack.tar.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that must not be kept")
    assert dl.fetch("test-pack", progress=False).read_bytes() == PAYLOAD


def test_wrong_checksum_fails_and_leaves_nothing_that_looks_complete(monkeypatch, server, data):
    _register(monkeypatch, server, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        dl.fetch("test-pack", progress=False)
    assert not (data / "downloads" / "test-pack.tar").exists()
    assert not (data / "downloads" / "test-pack.tar.part").exists()
    assert not (data / "test-pack").exists()


def test_unknown_sha256_prints_the_computed_one(monkeypatch, server, capsys):
    _register(monkeypatch, server, sha256=None, md5=hashlib.md5(PAYLOAD).hexdigest())
    dl.fetch("test-pack", progress=False)
    assert f"SHA-256 {PAYLOAD_SHA}" in capsys.readouterr().out


def test_offline_error_names_the_url_the_file_and_the_folder(monkeypatch, data):
    url = _closed_port_url()
    monkeypatch.setitem(dl.ASSETS, "gone", Asset(name="gone", url=url, filename="gone.tar", description="x",
                                                 extract_to="gone"))
    with pytest.raises(OfflineError) as info:
        dl.fetch("gone", progress=False)
    message = str(info.value)
    assert url in message and "gone.tar" in message and str(data / "downloads") in message
    assert "course-lab fetch-data gone" in message
    assert not (data / "gone").exists()


def test_http_error_is_not_reported_as_offline(monkeypatch, server):
    asset = _register(monkeypatch, server)
    monkeypatch.setitem(dl.ASSETS, "test-pack", dataclasses.replace(asset, url=f"{server.url}/missing.tar"))
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        dl.fetch("test-pack", progress=False)
    assert not isinstance(info.value, OfflineError)


# --------------------------------------------------------------------------- extraction

def _unsafe_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        ok = tarfile.TarInfo("pack/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo({"absolute": "/tmp/evil.txt", "dotdot": "pack/../../evil.txt",
                               "symlink": "pack/link", "hardlink": "pack/hard", "device": "pack/dev"}[kind])
        if kind == "symlink":
            bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            bad.type, bad.linkname = tarfile.LNKTYPE, "pack/ok.txt"
        elif kind == "device":
            bad.type = tarfile.CHRTYPE
        else:
            bad.size = 4
        tar.addfile(bad, io.BytesIO(b"evil") if bad.isfile() else None)
    return buffer.getvalue()


@pytest.mark.parametrize("kind, reason", [("absolute", "absolute path"), ("dotdot", r"'\.\.'"),
                                          ("symlink", "symbolic link"), ("hardlink", "hard link"),
                                          ("device", "device")])
def test_unsafe_members_are_refused_before_anything_is_written(tmp_path, kind, reason):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_unsafe_tar(kind))
    with pytest.raises(UnsafeArchiveError, match=reason):
        dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
    assert not Path("/tmp/evil.txt").exists()


def test_interrupted_extraction_leaves_no_completion_marker(tmp_path, monkeypatch):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(PAYLOAD)
    real_extract, calls = tarfile.TarFile.extract, []

    def dying_extract(self, member, *args, **kwargs):
        calls.append(member.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the student pressed stop, or the kernel died
        return real_extract(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", dying_extract)
    with pytest.raises(KeyboardInterrupt):
        dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not dl.is_complete(tmp_path / "out")
    assert not list(tmp_path.glob(".out.partial-*"))
    monkeypatch.setattr(tarfile.TarFile, "extract", real_extract)
    assert dl.is_complete(dl.extract_archive(archive, tmp_path / "out", progress=False))


def test_folder_without_marker_is_replaced(tmp_path):
    archive = tmp_path / "ok.tar"
    archive.write_bytes(PAYLOAD)
    half = tmp_path / "out" / "pack"
    half.mkdir(parents=True)
    (half / "README.txt").write_text("half-copied")
    assert not dl.is_complete(tmp_path / "out")
    dl.extract_archive(archive, tmp_path / "out", progress=False)
    assert dl.is_complete(tmp_path / "out") and (half / "README.txt").read_text() == "hello\n"


def test_corrupt_archive_placed_by_hand_is_rejected(monkeypatch, server, data):
    _register(monkeypatch, server)
    archive = data / "downloads" / "test-pack.tar"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(PAYLOAD[:-100] + b"x" * 100)
    with pytest.raises(ChecksumError, match="delete it"):
        dl.fetch("test-pack", progress=False)
    assert not (data / "test-pack").exists()


# --------------------------------------------------------------------------- end to end

def test_imagenet_a_subset_from_a_course_server(monkeypatch, server, data, tmp_path):
    from course_utils.imagenet_a import ImageNetA, find_imagenet_a, make_imagenet_a_fixture, make_imagenet_a_subset_tar

    make_imagenet_a_fixture(tmp_path / "src", n_classes=3, per_class=2)
    sha = make_imagenet_a_subset_tar(tmp_path / "src", tmp_path / "subset.tar", classes=2)
    server.files["/subset.tar"] = (tmp_path / "subset.tar").read_bytes()
    monkeypatch.setenv(dl.SUBSET_URL_ENV, f"{server.url}/subset.tar")
    monkeypatch.setenv(dl.SUBSET_SHA256_ENV, sha)
    with pytest.raises(FileNotFoundError, match="fetch-data"):
        find_imagenet_a()
    folder = dl.fetch_all(["imagenet-a-subset"], progress=False)["imagenet-a-subset"]
    assert folder == data / "imagenet-a-subset" == find_imagenet_a()
    ds = ImageNetA(folder)
    assert len(ds) == 4 and ds[0][0].shape == (3, 224, 224)


def test_fetch_all_tries_everything_and_reports_failures(monkeypatch, server):
    _register(monkeypatch, server)
    monkeypatch.setitem(dl.ASSETS, "gone", Asset(name="gone", url=_closed_port_url(), filename="gone.tar",
                                                 description="x"))
    with pytest.raises(DownloadError, match="1 of 2 assets failed: gone"):
        dl.fetch_all(["gone", "test-pack"], progress=False)
    assert dl.is_fetched("test-pack")
    with pytest.raises(KeyError, match="unknown asset"):
        dl.fetch_all(["nope"])


# --------------------------------------------------------------------------- ResNet-50 weights

def test_pretrained_resnet50_offline_without_weights_says_what_to_do(monkeypatch, data):
    from course_utils.models import pretrained_resnet50

    with pytest.raises(FileNotFoundError, match=r"(?s)course-lab fetch-data resnet50-imagenet1k-v1.*resnet50-0676ba61\.pth"):
        pretrained_resnet50(download=False)
    asset = dl.ASSETS["resnet50-imagenet1k-v1"]
    monkeypatch.setitem(dl.ASSETS, asset.name, dataclasses.replace(asset, url=_closed_port_url()))
    with pytest.raises(OfflineError, match=r"(?s)fetch-data resnet50-imagenet1k-v1.*resnet50-0676ba61\.pth"):
        pretrained_resnet50(progress=False)


def test_pretrained_resnet50_loads_cached_weights_and_takes_unit_range_images(data):
    from torchvision.models import resnet50

    from course_utils.models import Normalized, pretrained_resnet50

    torch.manual_seed(0)
    reference = resnet50()
    path = data / "weights" / "resnet50-0676ba61.pth"
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = pretrained_resnet50(download=False)
    assert isinstance(model, Normalized) and not model.training
    assert torch.equal(model.model.fc.weight, reference.fc.weight)
    assert torch.equal(model.model.layer1[0].bn1.running_var, reference.layer1[0].bn1.running_var)
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        assert torch.allclose(model(x), reference.eval()(Normalized(torch.nn.Identity())(x)), atol=1e-5)
