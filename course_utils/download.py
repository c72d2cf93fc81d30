"""One registry of everything the lab downloads, and one downloader (d2l's DATA_HUB idea).

Every asset lands in the data directory (`COURSE_DATA_DIR`, default ~/.cache/course_utils):
archives in `downloads/`, extracted data sets in a folder of their own, weights in
`weights/`. `fetch(name)` returns the asset's path, downloading only what is missing:

- the transfer streams into `<file>.part` and resumes after an interruption with an HTTP
  Range request (a server that answers 200 instead of 206 gets a fresh start); a dropped
  connection is resumed a few times within one call, and a later call resumes too;
- the file is verified (SHA-256 where the registry knows it; otherwise the digest it does
  know, and the computed SHA-256 is printed so a maintainer can pin it) and only then
  renamed to its final name, so a half-downloaded or corrupt file never looks complete;
- an archive is checked member by member (no absolute paths, no `..`, no links, no
  devices; tarfile's "data" filter on top) and extracted into a temporary sibling folder
  that gets a completion marker and is then renamed into place: a folder without the
  marker was never finished;
- offline, the error names the URL, the file and the folder to put it in.

The command line (`course-lab fetch-data`) calls `fetch_all`, so a TA can prefetch
everything once and copy the data directory to machines without internet.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable

from .data import DATA_DIR_ENV, data_dir

MARKER = ".complete"  # written into an extracted folder before it is renamed into place
DOWNLOADS = "downloads"
USER_AGENT = "course-utils (CS3485 lab 4)"


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says what to do."""


class OfflineError(DownloadError):
    """The server could not be reached (no internet, DNS failure, refused connection)."""


class ChecksumError(DownloadError):
    """The downloaded file is not the expected one; it has been deleted."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside its folder, or is a link or a device."""


@dataclasses.dataclass(frozen=True)
class Asset:
    """One downloadable thing.

    `filename` is the name it is saved under (in `data_dir()/subdir`); `extract_to`, when
    set, is the folder under `data_dir()` the archive is extracted into (and then `fetch`
    returns that folder, else the file). `sha256` is verified when known; `sha256_prefix`
    (torchvision embeds the first 8 hex digits of the SHA-256 in its weight file names) and
    `md5` are checked too when given. `size` is in bytes, for the progress bar and the free
    space check; it is not verified.

    `url_env` / `sha256_env` name the environment variables that override `url` / `sha256`,
    by default `COURSE_<NAME>_URL` / `COURSE_<NAME>_SHA256` (the name upper-cased, `-` as
    `_`: `COURSE_CIFAR10_URL`, `COURSE_IMAGENET_A_SUBSET_SHA256`). They point an asset at a
    mirror, the course-hosted subset, or a stand-in served to a test. A URL alone keeps the
    registry's digests, so only the real file verifies; an explicit SHA-256 replaces all of
    them (MD5 and file-name prefix included), so a different file is accepted only when its
    SHA-256 is given.
    """

    name: str
    url: str | None
    filename: str
    description: str
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = None
    subdir: str = DOWNLOADS
    md5: str | None = None
    sha256_prefix: str | None = None
    url_env: str | None = None
    sha256_env: str | None = None

    def __post_init__(self):
        prefix = "COURSE_" + re.sub(r"[^A-Z0-9]+", "_", self.name.upper())
        if self.url_env is None:
            object.__setattr__(self, "url_env", f"{prefix}_URL")
        if self.sha256_env is None:
            object.__setattr__(self, "sha256_env", f"{prefix}_SHA256")

    def resolved(self) -> "Asset":
        """This asset with `url_env` / `sha256_env` applied (an empty variable counts as unset)."""
        url = (os.environ.get(self.url_env) or "").strip() or self.url
        sha = (os.environ.get(self.sha256_env) or "").strip().lower()
        if not sha:
            return dataclasses.replace(self, url=url)
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError(f"{self.sha256_env}={sha!r} is not a SHA-256 (64 hex digits). Fix: set it to the "
                             f"`sha256sum` of the file served at {url}, or unset it.")
        return dataclasses.replace(self, url=url, sha256=sha, md5=None, sha256_prefix=None)

    @property
    def path(self) -> Path:
        """Where `fetch` puts it: the extracted folder, or the file."""
        return data_dir() / self.extract_to if self.extract_to else data_dir() / self.subdir / self.filename

    @property
    def download_path(self) -> Path:
        return data_dir() / self.subdir / self.filename


SUBSET_URL_ENV = "COURSE_IMAGENET_A_SUBSET_URL"
SUBSET_SHA256_ENV = "COURSE_IMAGENET_A_SUBSET_SHA256"

ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset(
        name="imagenet-a",
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
        filename="imagenet-a.tar",
        description="ImageNet-A, all 7,500 images of 200 classes (Hendrycks et al. 2021), the official archive",
        # No published SHA-256. The MD5 below is the one torchvision-style loaders record
        # (e.g. torch-uncertainty's ImageNetA); the SHA-256 is printed on first download.
        sha256=None,
        md5="c3e55429088dc681f30d81f4726b6595",
        size=687_552_512,
        extract_to="imagenet-a",
    ),
    Asset(
        name="imagenet-a-subset",
        url=None,
        filename="imagenet-a-subset.tar",
        description="the course's subset of ImageNet-A (same layout), hosted by the course",
        extract_to="imagenet-a-subset",
        url_env=SUBSET_URL_ENV,
        sha256_env=SUBSET_SHA256_ENV,
    ),
    Asset(
        name="resnet50-imagenet1k-v1",
        url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        filename="resnet50-0676ba61.pth",
        description="torchvision ResNet-50 weights ResNet50_Weights.IMAGENET1K_V1 (76.1% top-1), the paper's model",
        sha256_prefix="0676ba61",
        size=102_530_333,  # about 97.8 MiB (torchvision's meta["_file_size"]); not verified
        subdir="weights",
    ),
    Asset(
        name="resnet50-imagenet1k-v2",
        url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        filename="resnet50-11ad3fa6.pth",
        description="torchvision ResNet-50 weights ResNet50_Weights.IMAGENET1K_V2 (80.9% top-1, newer recipe)",
        sha256_prefix="11ad3fa6",
        size=102_540_417,
        subdir="weights",
    ),
    Asset(
        name="densenet121-imagenet1k-v1",
        url="https://download.pytorch.org/models/densenet121-a639ec97.pth",
        filename="densenet121-a639ec97.pth",
        description="torchvision DenseNet-121 weights DenseNet121_Weights.IMAGENET1K_V1 (74.4% top-1): "
                    "a model outside ImageNet-A's filtering, and not a ResNet, for transfer",
        sha256_prefix="a639ec97",
        size=32_342_954,  # about 30.8 MiB (torchvision's meta["_file_size"]); not verified
        subdir="weights",
    ),
    Asset(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        description="CIFAR-10 (Krizhevsky 2009), the full profile's data set: the official python-pickle archive",
        # SHA-256 as pinned by Keras' cifar10.load_data; the MD5 is the one published on the
        # data set's page (and in torchvision's CIFAR10).
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        md5="c58f30108f718f92721af3b95e74349a",
        size=170_498_071,
        extract_to="cifar10",  # holds cifar-10-batches-py/, which course_utils.data.load_cifar10 reads
    ),
]}


def get_asset(name: str) -> Asset:
    """The registry entry `name`, with its environment overrides applied."""
    try:
        return ASSETS[name].resolved()
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; choose from {', '.join(ASSETS)}") from None


def imagenet_a_asset_name() -> str:
    """'imagenet-a-subset' when the course subset's URL is configured, else 'imagenet-a'."""
    return "imagenet-a-subset" if get_asset("imagenet-a-subset").url else "imagenet-a"


def default_assets() -> tuple[str, ...]:
    """What the full profile needs: CIFAR-10, the ImageNet models' weights (notebook 01's filter model and
    its two transfer models) and ImageNet-A."""
    return ("cifar10", "resnet50-imagenet1k-v1", "resnet50-imagenet1k-v2", "densenet121-imagenet1k-v1",
            imagenet_a_asset_name())


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` is an extraction that finished (it has the completion marker)."""
    return (Path(folder) / MARKER).is_file()


def is_fetched(name: str) -> bool:
    asset = get_asset(name)
    return is_complete(asset.path) if asset.extract_to else asset.path.is_file()


# --------------------------------------------------------------------------- helpers

def _human(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    return ""


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """SHA-256 and MD5 of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _mismatches(digests: dict[str, str], sha256: str | None, md5: str | None, sha256_prefix: str | None) -> list[str]:
    out = []
    if sha256 and digests["sha256"] != sha256.lower():
        out.append(f"SHA-256 {digests['sha256']} (expected {sha256.lower()})")
    if sha256_prefix and not digests["sha256"].startswith(sha256_prefix.lower()):
        out.append(f"SHA-256 {digests['sha256']} (expected it to start with {sha256_prefix.lower()})")
    if md5 and digests["md5"] != md5.lower():
        out.append(f"MD5 {digests['md5']} (expected {md5.lower()})")
    return out


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on the hidden file `.<name>.lock` beside `path`, so that two notebooks
    fetching the same asset take turns."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stdout, disable=not enabled, dynamic_ncols=True)


def _offline_message(url: str, dest: Path, reason: object, name: str | None) -> str:
    how = f"`course-lab fetch-data {name}`" if name else "the same call"
    return (
        f"could not download {url} ({reason}). This machine looks offline, or the server is down.\n"
        f"Fix: run {how} on a machine with internet and copy its data folder here "
        f"(set {DATA_DIR_ENV} to point at it), or download the file by hand and save it as\n"
        f"    {dest.name}\nin the folder\n    {dest.parent}\nthen run this again."
    )


# --------------------------------------------------------------------------- the downloader

_TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, TimeoutError,
              socket.timeout, urllib.error.URLError)


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None,
             sha256_prefix: str | None = None, size: int | None = None, name: str | None = None,
             progress: bool = True, retries: int = 3, timeout: float = 60.0, chunk_size: int = 1 << 20) -> Path:
    """Download `url` to `dest` (resuming `dest.part`), verify it, rename it into place.

    An existing `dest` is returned as is: only a verified download is ever renamed to
    `dest`. A connection that drops mid-transfer is resumed (giving up after `retries`
    attempts in a row that get nothing); one that cannot be opened at all raises
    `OfflineError` at once. A resumed file that does not verify is downloaded once more
    from scratch; a fresh one that does not verify is deleted and raises `ChecksumError`.
    With no SHA-256 given, the computed one is printed.
    """
    dest = Path(dest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with _locked(dest):
        if dest.is_file():  # another process finished it while we waited
            return dest
        _check_free_space(dest.parent, size, part)
        resumed = part.exists()
        while True:
            _receive(url, part, dest, size, name, progress, retries, timeout, chunk_size)
            digests = file_digests(part)
            bad = _mismatches(digests, sha256, md5, sha256_prefix)
            if not bad:
                break
            part.unlink()
            if resumed:  # the partial file was left by a different or older download: start over once
                print(f"{part.name} did not complete to the expected file; downloading it afresh", file=sys.stdout)
                resumed = False
                continue
            raise ChecksumError(
                f"{url} downloaded, but it is not the expected file: {'; '.join(bad)}. It has been deleted. "
                f"Fix: run again to download afresh; if this repeats, the file on the server changed or "
                f"a proxy altered it: tell the course staff."
            )
        if not sha256:
            print(f"{dest.name}: SHA-256 {digests['sha256']} (not pinned in the registry; "
                  f"{'the MD5 matched' if md5 else 'nothing to verify it against'})", file=sys.stdout)
        os.replace(part, dest)
    return dest


def _receive(url, part: Path, dest: Path, size, name, progress, retries, timeout, chunk_size) -> None:
    """Transfer until `part` holds the whole file, resuming after a connection that breaks off;
    give up after `retries` attempts in a row that add nothing."""
    stalled = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        if _transfer(url, part, dest, size, name, progress, timeout, chunk_size) == "done":
            return
        after = part.stat().st_size if part.exists() else 0
        stalled = 0 if after > before else stalled + 1
        if stalled > retries:
            raise DownloadError(f"the download of {url} kept breaking off ({_human(after)} saved in {part}). "
                                f"Run the same command again to resume from there.")


def _check_free_space(folder: Path, size: int | None, part: Path) -> None:
    if not size:
        return
    need = size - (part.stat().st_size if part.exists() else 0)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DownloadError(f"not enough disk space in {folder}: the download needs {_human(need)} more, "
                            f"{_human(free)} are free. Free some space or set {DATA_DIR_ENV} to another disk.")


def _transfer(url, part: Path, dest: Path, size, name, progress, timeout, chunk_size) -> str:
    """One request: 'done' when `part` holds the whole file, 'retry' when the transfer broke off."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part is whole (or longer; the hash decides)
            return "done"
        raise DownloadError(f"{url} answered HTTP {err.code} {err.reason}. The address may have moved: "
                            f"tell the course staff, or download the file by hand and save it as "
                            f"{dest}.") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise OfflineError(_offline_message(url, dest, reason, name)) from err
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if offset and status == 206 and (response.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            mode = "ab"
        else:  # 200: the server ignored the Range header, so start over
            offset, mode = 0, "wb"
        total = offset + length if length is not None else size
        received = 0
        bar = _progress_bar(total, offset, dest.name, progress)
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        block = response.read(chunk_size)
                    except _TRANSIENT:
                        return "retry"
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if length is not None and received < length:
        return "retry"  # the connection closed early
    return "done"


# --------------------------------------------------------------------------- safe extraction

def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a path with '..' that leaves the folder"
    if member.issym() or member.islnk():
        return f"a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
    if member.ischr() or member.isblk() or member.isfifo():
        return "a device or FIFO"
    if not (member.isfile() or member.isdir()):
        return "neither a file nor a folder"
    return None


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True,
                    info: dict | None = None) -> Path:
    """Extract the tar `archive` into the folder `dest`, safely and atomically.

    Every member is checked before anything is written; one unsafe member refuses the whole
    archive. Members go into a temporary sibling of `dest`, which gets the completion
    marker (holding `info` as JSON) and is then renamed to `dest`; a `dest` left without
    the marker is replaced. Returns `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    if is_complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if is_complete(dest):
            return dest
        try:
            tar = tarfile.open(archive, "r:*")
        except (tarfile.TarError, OSError) as err:
            raise DownloadError(f"{archive} is not a readable tar archive ({err}). Fix: delete it and fetch "
                                f"it again.") from err
        with tar:
            try:
                members = tar.getmembers()
            except (tarfile.TarError, OSError, EOFError) as err:
                raise DownloadError(f"{archive} is truncated or corrupt ({err}). Fix: delete it and fetch "
                                    f"it again.") from err
            for member in members:
                reason = _unsafe_reason(member)
                if reason:
                    raise UnsafeArchiveError(
                        f"refusing to extract {archive}: member {member.name!r} is {reason}. The archive is "
                        f"not one the course ships, or it was tampered with. Fix: delete it and fetch it "
                        f"again from the official address."
                    )
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
            stale = None
            try:
                _extract_members(tar, members, tmp, archive, progress)
                (tmp / MARKER).write_text(json.dumps({"archive": archive.name, **(info or {})}, sort_keys=True))
                if dest.exists():  # an unfinished extraction (no marker) or a hand-made copy
                    stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}")
                    os.replace(dest, stale)
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            finally:
                if stale is not None:
                    shutil.rmtree(stale, ignore_errors=True)
    return dest


def _extract_members(tar: tarfile.TarFile, members, tmp: Path, archive: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    for member in tqdm(members, desc=f"extracting {archive.name}", unit="file", file=sys.stdout,
                       disable=not progress, dynamic_ncols=True):
        try:
            tar.extract(member, tmp, **kwargs)
        except tarfile.FilterError as err:
            raise UnsafeArchiveError(f"refusing to extract {archive}: member {member.name!r} was rejected by "
                                     f"tarfile's data filter ({err}). Fix: delete it and fetch it again.") from err
        except (tarfile.TarError, EOFError) as err:
            raise DownloadError(f"{archive} is truncated or corrupt at {member.name!r} ({err}). Fix: delete it "
                                f"and fetch it again.") from err


# --------------------------------------------------------------------------- fetch

def fetch(name: str, *, progress: bool = True, keep_archive: bool = False, retries: int = 3,
          into: str | os.PathLike | None = None) -> Path:
    """The asset `name` from the registry, downloaded (and extracted) if it is not yet there.

    Returns the extracted folder for archives (e.g. `<data dir>/imagenet-a`, which holds
    `imagenet-a/<wnid>/`), else the file. An archive someone put into `<data dir>/downloads`
    by hand is verified before it is extracted; it is deleted after a successful
    extraction unless `keep_archive`. `into` extracts an archive into that folder instead
    of the registry's (e.g. `load_cifar10(root=...)`).
    """
    asset = get_asset(name)
    if into is not None:
        if not asset.extract_to:
            raise ValueError(f"asset {name!r} is a single file, not an archive: it has no folder to extract into")
        asset = dataclasses.replace(asset, extract_to=os.fspath(Path(into).expanduser().absolute()))
    if not asset.url:
        hint = f" Set {asset.url_env} (and {asset.sha256_env}) to the address the course gives." if asset.url_env else ""
        raise DownloadError(f"asset {name!r} has no download address configured.{hint} Or put "
                            f"{asset.filename} into {asset.download_path.parent} by hand.")
    if asset.extract_to and is_complete(asset.path):
        return asset.path
    archive = asset.download_path
    placed_by_hand = archive.is_file()
    download(asset.url, archive, sha256=asset.sha256, md5=asset.md5, sha256_prefix=asset.sha256_prefix,
             size=asset.size, name=name, progress=progress, retries=retries)
    if not asset.extract_to:
        return archive
    digests = None
    if placed_by_hand:
        digests = file_digests(archive)
        bad = _mismatches(digests, asset.sha256, asset.md5, asset.sha256_prefix)
        if bad:
            raise ChecksumError(f"{archive} is not the expected file: {'; '.join(bad)}. Fix: delete it and "
                                f"fetch it again.")
    info = {"asset": name, "url": asset.url}
    if digests or asset.sha256:
        info["sha256"] = digests["sha256"] if digests else asset.sha256
    folder = extract_archive(archive, asset.path, progress=progress, info=info)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return folder


def fetch_all(names: Iterable[str] | None = None, *, progress: bool = True, keep_archive: bool = False) -> dict[str, Path]:
    """Fetch several assets (default: `default_assets()`, what the full profile needs).

    Every asset is tried even if an earlier one fails; each failure's message is printed
    as it happens, and one `DownloadError` at the end names them all (its `failures`
    attribute maps each name to its exception).
    """
    names = list(default_assets() if names is None else names)
    for name in names:
        get_asset(name)  # unknown names fail before anything downloads
    done, failed = {}, {}
    for name in names:
        print(f"[{name}] {ASSETS[name].description}", file=sys.stdout)
        try:
            done[name] = fetch(name, progress=progress, keep_archive=keep_archive)
            print(f"[{name}] ready: {done[name]}", file=sys.stdout)
        except (DownloadError, RuntimeError, OSError) as err:
            failed[name] = err
            print(f"[{name}] FAILED: {err}", file=sys.stdout)
    if failed:
        error = DownloadError(f"{len(failed)} of {len(names)} assets failed: {', '.join(failed)} "
                              f"(the messages above say why and what to do)")
        error.failures = failed
        raise error
    return done


def describe_assets() -> str:
    """A table of the registry: name, size, whether it is in the data directory, description."""
    rows = [f"data directory: {data_dir()}  (set {DATA_DIR_ENV} to change)"]
    for name, asset in ASSETS.items():
        asset = asset.resolved()
        state = "fetched" if is_fetched(name) else ("not configured" if not asset.url else "missing")
        rows.append(f"  {name:24s} {_human(asset.size):>10s}  {state:14s} {asset.description}")
    rows.append("a mirror: set COURSE_<NAME>_URL (e.g. COURSE_CIFAR10_URL); the registry's checksums still apply unless "
                "COURSE_<NAME>_SHA256 gives the file's own")
    return "\n".join(rows)


__all__ = [
    "ASSETS", "Asset", "ChecksumError", "DownloadError", "OfflineError", "UnsafeArchiveError",
    "default_assets", "describe_assets", "download", "extract_archive", "fetch", "fetch_all", "file_digests",
    "get_asset", "imagenet_a_asset_name", "is_complete", "is_fetched", "data_dir",
]
