"""Stand-ins for what the full profile downloads, in the real formats, and a loopback HTTP
server to serve them through the real downloader (tests/test_download.py,
tests/test_full_smoke.py). Nothing here touches the internet.

- `cifar10_archive`: a `cifar-10-python.tar.gz` with the official layout
  (`cifar-10-batches-py/data_batch_1..5`, `test_batch`, `batches.meta`, pickled dicts with
  b"data" uint8 (N, 3072) and b"labels", https://www.cs.toronto.edu/~kriz/cifar.html),
  filled with Digits-M images: scikit-learn's digits on crops of its photos, coloured,
  32x32, 10 classes;
- `resnet50_weights`: a randomly initialised torchvision ResNet-50 state dict, saved the way
  torchvision's weight files are;
- ImageNet-A comes from `course_utils.imagenet_a.make_imagenet_a_fixture` and
  `make_imagenet_a_subset_tar`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch


# --------------------------------------------------------------------------- a loopback server

class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files` (path -> bytes) with Range support; logs every request in
    `server.requests` as (path, Range header); `server.drop_after` hangs up once after that
    many bytes; `server.honor_range = False` answers 200 to a Range request."""

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


@contextlib.contextmanager
def loopback_server():
    """A threaded HTTP server on 127.0.0.1 (a free port); `.url` is its address."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.honor_range, httpd.drop_after = {}, [], True, None
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def cifar10_archive(train_per_batch: int = 40, test: int = 100, seed: int = 0) -> tuple[bytes, dict]:
    """A stand-in `cifar-10-python.tar.gz` and what it holds: {"train": (images uint8
    (N, 3, 32, 32), labels), "test": (...)}, to compare with what a loader returns.

    The 5 training batches hold `train_per_batch` images each, the test batch `test`:
    Digits-M images (each class 0..9 in turn, so every batch has all 10 classes), stored
    as CIFAR-10 stores them: one row of 3072 bytes per image, the 1024 red values, then
    green, then blue, each plane row-major.
    """
    from course_utils.data import load_digits

    def images(split: str, n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        ds = load_digits(split, background="photos", seed=seed)
        by_class = [(ds.labels == c).nonzero().flatten() for c in range(10)]
        picked = []
        for k in range(offset, offset + n):  # round-robin over the classes: image k//10 of class k%10
            members = by_class[k % 10]
            picked.append(int(members[k // 10 % len(members)]))
        x = (ds.images[picked] * 255).round().to(torch.uint8).numpy()
        return x, ds.labels[picked].numpy()

    members: dict[str, bytes] = {}
    content = {}
    train_x, train_y = [], []
    for b in range(1, 6):
        x, y = images("train", train_per_batch, (b - 1) * train_per_batch)
        train_x.append(x)
        train_y.append(y)
        members[f"data_batch_{b}"] = _batch(x, y, f"training batch {b} of 5")
    x, y = images("test", test, 0)
    members["test_batch"] = _batch(x, y, "testing batch 1 of 1")
    content["train"] = (np.concatenate(train_x), np.concatenate(train_y))
    content["test"] = (x, y)
    members["batches.meta"] = pickle.dumps({b"num_cases_per_batch": train_per_batch, b"label_names": CIFAR10_LABEL_NAMES,
                                            b"num_vis": 3072}, protocol=2)
    members["readme.html"] = b"<p>A stand-in for CIFAR-10 made by the course's tests (Digits-M images).</p>\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _tar_add(tar, "cifar-10-batches-py", None)
        for name, data in members.items():
            _tar_add(tar, f"cifar-10-batches-py/{name}", data)
    return buffer.getvalue(), content


def _batch(x: np.ndarray, y: np.ndarray, label: str) -> bytes:
    return pickle.dumps({b"batch_label": label.encode(), b"labels": [int(v) for v in y],
                         b"data": x.reshape(len(x), 3 * 32 * 32),
                         b"filenames": [f"standin_{i:05d}.png".encode() for i in range(len(x))]}, protocol=2)


# --------------------------------------------------------------------------- ResNet-50 weights

def resnet50_weights(seed: int = 0) -> bytes:
    """A randomly initialised torchvision ResNet-50's state dict, as `torch.save` writes a weight file."""
    return torchvision_weights("resnet50", seed)


def torchvision_weights(arch: str, seed: int = 0) -> bytes:
    """A randomly initialised torchvision model's state dict (`arch`, e.g. "densenet121"), as a weight file."""
    import torchvision.models

    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(getattr(torchvision.models, arch)().state_dict(), buffer)
    return buffer.getvalue()


def imagenet_a_archive(folder: Path, *, n_classes: int = 3, per_class: int = 2, size: int = 80) -> bytes:
    """A tar in ImageNet-A's layout (`imagenet-a/<wnid>/*.jpg`) of the course's fixture images."""
    from course_utils.imagenet_a import make_imagenet_a_fixture, make_imagenet_a_subset_tar

    source = make_imagenet_a_fixture(folder / "source", n_classes=n_classes, per_class=per_class, size=size)
    make_imagenet_a_subset_tar(source, folder / "imagenet-a.tar")
    return (folder / "imagenet-a.tar").read_bytes()
