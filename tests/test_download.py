"""The asset registry and the downloader, against a loopback HTTP server: nothing here
touches the internet."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import tarfile
from pathlib import Path

import pytest
import torch
from standins import cifar10_archive, loopback_server, resnet50_weights

from course_utils import download as dl
from course_utils.download import Asset, ChecksumError, DownloadError, OfflineError, UnsafeArchiveError


# --------------------------------------------------------------------------- a loopback server

@pytest.fixture
def server():
    with loopback_server() as httpd:  # tests/standins.py, shared with the full-profile smoke test
        yield httpd


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
        if asset.extract_to is None or name == "cifar10":
            assert asset.sha256 or asset.sha256_prefix or asset.md5, f"{name} cannot be verified"
        stem = "COURSE_" + name.upper().replace("-", "_")
        assert (asset.url_env, asset.sha256_env) == (f"{stem}_URL", f"{stem}_SHA256")


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
    assert dl.default_assets() == ("cifar10", "resnet50-imagenet1k-v1", "resnet50-imagenet1k-v2",
                                   "densenet121-imagenet1k-v1", "imagenet-a-subset")
    assert asset.path == data / "imagenet-a-subset"


def test_every_asset_can_be_pointed_at_a_mirror_but_keeps_its_hashes(monkeypatch, server, data):
    """A URL override alone still demands the real file: a stand-in for ResNet-50's weights
    fails the SHA-256 prefix in torchvision's file name and is deleted."""
    standin = resnet50_weights()
    server.files["/w.pth"] = standin
    monkeypatch.setenv("COURSE_RESNET50_IMAGENET1K_V1_URL", f"{server.url}/w.pth")
    asset = dl.get_asset("resnet50-imagenet1k-v1")
    assert asset.url == f"{server.url}/w.pth" and asset.sha256_prefix == "0676ba61"
    with pytest.raises(ChecksumError, match="0676ba61"):
        dl.fetch("resnet50-imagenet1k-v1", progress=False)
    assert not [p.name for p in (data / "weights").iterdir() if not p.name.endswith(".lock")]


def test_a_different_file_is_accepted_only_with_its_sha256(monkeypatch, server, data):
    from course_utils.models import pretrained_resnet50

    standin = resnet50_weights()
    server.files["/w.pth"] = standin
    monkeypatch.setenv("COURSE_RESNET50_IMAGENET1K_V1_URL", f"{server.url}/w.pth")
    monkeypatch.setenv("COURSE_RESNET50_IMAGENET1K_V1_SHA256", hashlib.sha256(standin).hexdigest().upper())
    asset = dl.get_asset("resnet50-imagenet1k-v1")
    assert (asset.sha256, asset.sha256_prefix, asset.md5) == (hashlib.sha256(standin).hexdigest(), None, None)
    model = pretrained_resnet50("IMAGENET1K_V1", progress=False)  # the notebook's call, through the downloader
    assert (data / "weights" / "resnet50-0676ba61.pth").read_bytes() == standin
    assert [path for path, _ in server.requests] == ["/w.pth"]
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    monkeypatch.setenv("COURSE_RESNET50_IMAGENET1K_V1_SHA256", "0676ba61")  # a prefix is not a SHA-256
    with pytest.raises(ValueError, match="COURSE_RESNET50_IMAGENET1K_V1_SHA256.*64 hex"):
        dl.get_asset("resnet50-imagenet1k-v1")


def test_cifar10_is_verified_and_extracted_by_the_downloader(monkeypatch, server, data):
    from course_utils.data import CIFAR10_CLASSES, load_cifar10

    archive, content = cifar10_archive(train_per_batch=10, test=20)
    server.files["/cifar.tgz"] = archive
    monkeypatch.setenv("COURSE_CIFAR10_URL", f"{server.url}/cifar.tgz")
    with pytest.raises(ChecksumError, match="expected 6d958be0"):  # the real archive's SHA-256 is pinned
        load_cifar10("test")
    assert not (data / "cifar10").exists()
    monkeypatch.setenv("COURSE_CIFAR10_SHA256", hashlib.sha256(archive).hexdigest())
    test = load_cifar10("test")
    assert dl.is_complete(data / "cifar10") and dl.is_fetched("cifar10")
    assert not (data / "downloads" / "cifar-10-python.tar.gz").exists()  # deleted once extracted
    train = load_cifar10("train")  # read from the extracted folder: no second download
    assert [path for path, _ in server.requests] == ["/cifar.tgz", "/cifar.tgz"]
    for ds, (images, labels) in ((train, content["train"]), (test, content["test"])):
        assert ds.classes == CIFAR10_CLASSES and ds.images.dtype == torch.float32
        assert torch.equal((ds.images * 255).round().to(torch.uint8), torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels).long())
    assert len(train) == 50 and len(test) == 20
    assert dl.fetch("cifar10", progress=False) == data / "cifar10"  # `course-lab fetch-data` finds it done


def test_cifar10_into_another_root(monkeypatch, server, data, tmp_path):
    from course_utils.data import load_cifar10

    archive, content = cifar10_archive(train_per_batch=10, test=20)
    server.files["/cifar.tgz"] = archive
    monkeypatch.setenv("COURSE_CIFAR10_URL", f"{server.url}/cifar.tgz")
    monkeypatch.setenv("COURSE_CIFAR10_SHA256", hashlib.sha256(archive).hexdigest())
    test = load_cifar10("test", root=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "cifar-10-batches-py" / "test_batch").is_file()
    assert dl.is_complete(tmp_path / "elsewhere") and not (data / "cifar10").exists()
    assert torch.equal(test.labels, torch.from_numpy(content["test"][1]).long())


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


def test_densenet121_loads_torchvisions_old_key_names(data):
    """torchvision's DenseNet file names layers "norm.1", "conv.2"; the loader renames them as
    torchvision does, and the model matches the one that was saved."""
    import re

    from torchvision.models import densenet121

    from course_utils.models import Normalized, pretrained_imagenet

    torch.manual_seed(0)
    reference = densenet121().eval()
    new = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$")
    old_style = {new.sub(r"\1.\2.\3", k): v for k, v in reference.state_dict().items()}
    assert any(".norm.1." in k for k in old_style), "the stand-in has the file's old key names"
    path = data / "weights" / "densenet121-a639ec97.pth"
    path.parent.mkdir(parents=True)
    torch.save(old_style, path)
    model = pretrained_imagenet("densenet121", "IMAGENET1K_V1", download=False)
    assert isinstance(model, Normalized) and not model.training
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        assert torch.allclose(model(x), reference(Normalized(torch.nn.Identity())(x)), atol=1e-5)


def test_pretrained_imagenet_names_what_it_knows():
    from course_utils.models import pretrained_imagenet

    with pytest.raises(ValueError, match="densenet121.*resnet50"):
        pretrained_imagenet("vgg16")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        pretrained_imagenet("densenet121", "IMAGENET1K_V2")
    assert pretrained_imagenet("densenet121", None)(torch.rand(1, 3, 32, 32)).shape == (1, 1000)


def test_a_torch_hub_copy_is_used_only_if_its_hash_matches(monkeypatch, data, tmp_path):
    """A file under torch hub's name whose SHA-256 does not start with the prefix in that name
    (a truncated or planted copy) is not loaded; a copy whose hash matches is, without a download."""
    import hashlib

    from course_utils.models import pretrained_resnet50

    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    planted = resnet50_weights(seed=3)
    (hub / "checkpoints" / "resnet50-0676ba61.pth").write_bytes(planted)
    with pytest.raises(FileNotFoundError, match="fetch-data resnet50-imagenet1k-v1"):
        pretrained_resnet50(download=False)  # the planted copy fails the name's hash prefix
    asset = dl.ASSETS["resnet50-imagenet1k-v1"]
    monkeypatch.setitem(dl.ASSETS, asset.name, dataclasses.replace(
        asset, sha256_prefix=hashlib.sha256(planted).hexdigest()[:8]))
    model = pretrained_resnet50(download=False)  # now it matches: loaded from the hub's cache
    torch.manual_seed(3)
    from torchvision.models import resnet50

    assert torch.equal(model.model.fc.weight, resnet50().fc.weight)
