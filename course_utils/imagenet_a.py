"""ImageNet-A (Hendrycks et al., "Natural Adversarial Examples", CVPR 2021) as a data set
that yields `(image, index in ImageNet-1k)`, its class metadata, and an offline stand-in.

ImageNet-A has 7,500 unmodified photos of 200 ImageNet-1k classes that ResNet-50 gets
wrong. Its archive extracts to `imagenet-a/<wnid>/*.jpg` plus `imagenet-a/README.txt`.
A model trained on ImageNet-1k is evaluated on it by reading only the 200 columns of its
1000 logits that ImageNet-A covers: `logits[:, dataset.indices_in_1k]`.

The class metadata (the 1k synsets, the 200 ImageNet-A synsets, their 1k indices and
their names) is read from the data files timm ships (`timm/data/_info/`), not pasted
here. They are read straight from timm's installed folder, so that asking for a class
name does not import timm itself (a few seconds); `pkgutil.get_data` is the fallback for
installs where the package is not a plain folder.

`make_imagenet_a_fixture` builds the quick profile's stand-in: the official layout under
real ImageNet-A wnids, filled with crops of the two photos scikit-learn ships. The labels
of those images mean nothing; the point is that the notebook runs the full code path
offline. `make_imagenet_a_subset_tar` is the maintainers' tool that cuts the
course-hosted subset out of the full data set.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import pkgutil
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

DATASET_FOLDER = "imagenet-a"  # the folder the official archive extracts to
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
WNID_PATTERN = re.compile(r"^n\d{8}$")
# torchvision's evaluation preprocessing for ResNet-50 (ResNet50_Weights.IMAGENET1K_V1):
# resize the short side to 256, centre-crop 224. Normalization is left to models.Normalized.
RESIZE_SIZE = 256
CROP_SIZE = 224

FIX_FETCH = (
    "Fix: on a machine with internet run `course-lab fetch-data` (or "
    "`course_utils.download.fetch('imagenet-a-subset')`), or for the offline quick profile "
    "build a stand-in with `course_utils.imagenet_a.make_imagenet_a_fixture(folder)`."
)


class CorruptImageError(RuntimeError):
    """An image file of the data set could not be decoded (truncated or not an image)."""


# --------------------------------------------------------------------------- metadata

def _timm_info(name: str) -> str:
    """The text of `timm/data/_info/<name>`, without importing timm if it can be avoided."""
    spec = importlib.util.find_spec("timm")
    if spec is None:
        raise ModuleNotFoundError("ImageNet class metadata comes from timm's package data: pip install timm")
    for location in spec.submodule_search_locations or ():
        path = Path(location) / "data" / "_info" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    data = pkgutil.get_data("timm", f"data/_info/{name}")
    if data is None:
        raise FileNotFoundError(f"timm's package data has no data/_info/{name}; reinstall timm (pip install timm)")
    return data.decode("utf-8")


@functools.lru_cache(maxsize=1)
def imagenet_1k_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k wnids in the order of a classifier's 1000 outputs."""
    wnids = tuple(_timm_info("imagenet_synsets.txt").split())
    assert len(wnids) == 1000, f"timm's imagenet_synsets.txt has {len(wnids)} entries, expected 1000"
    return wnids


@functools.lru_cache(maxsize=1)
def _lemmas() -> dict[str, str]:
    out = {}
    for line in _timm_info("imagenet_synset_to_lemma.txt").splitlines():
        wnid, _, lemma = line.partition("\t")
        out[wnid] = lemma.strip()
    return out


@functools.lru_cache(maxsize=1)
def imagenet_1k_names() -> tuple[str, ...]:
    """Short human-readable names of the 1k classes (the first lemma: "stingray", "goldfish")."""
    lemmas = _lemmas()
    return tuple(lemmas[w].split(",")[0].strip() for w in imagenet_1k_wnids())


def wnid_name(wnid: str) -> str:
    """The full WordNet lemma of any synset, e.g. 'n01498041' -> 'stingray'."""
    try:
        return _lemmas()[wnid]
    except KeyError:
        raise KeyError(f"{wnid!r} is not a WordNet synset id known to timm") from None


@functools.lru_cache(maxsize=1)
def imagenet_a_wnids() -> tuple[str, ...]:
    """The 200 ImageNet-A wnids, in the order of the 200 columns (sorted, as in the paper's code)."""
    wnids = tuple(_timm_info("imagenet_a_synsets.txt").split())
    assert len(wnids) == 200, f"timm's imagenet_a_synsets.txt has {len(wnids)} entries, expected 200"
    return wnids


@functools.lru_cache(maxsize=1)
def imagenet_a_indices() -> tuple[int, ...]:
    """For each of the 200 columns, its class index among ImageNet-1k's 1000 outputs."""
    indices = tuple(int(i) for i in _timm_info("imagenet_a_indices.txt").split())
    wnids_1k = imagenet_1k_wnids()
    mismatched = [(w, i) for w, i in zip(imagenet_a_wnids(), indices) if wnids_1k[i] != w]
    if len(indices) != 200 or mismatched:
        raise RuntimeError(f"timm's ImageNet-A metadata is inconsistent (first mismatches: {mismatched[:3]}); reinstall timm")
    return indices


@functools.lru_cache(maxsize=1)
def imagenet_a_names() -> tuple[str, ...]:
    """Short names of the 200 ImageNet-A classes, in column order."""
    names = imagenet_1k_names()
    return tuple(names[i] for i in imagenet_a_indices())


@functools.lru_cache(maxsize=1)
def _column_of_wnid() -> dict[str, int]:
    return {w: c for c, w in enumerate(imagenet_a_wnids())}


# --------------------------------------------------------------------------- the data set

def default_transform(crop: int = CROP_SIZE, resize: int = RESIZE_SIZE) -> Callable:
    """PIL image -> float tensor (3, crop, crop) in [0, 1]: short side resized to `resize`
    (bilinear, on the PIL image), centre crop `crop`. This is exactly what torchvision's
    `ResNet50_Weights.IMAGENET1K_V1.transforms()` does to a PIL image, without the
    normalization, which `course_utils.models.Normalized` applies inside the model so that
    attacks can work on [0, 1] pixels."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(resize, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
                       v2.CenterCrop(crop), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


def resolve_root(root: str | os.PathLike) -> Path:
    """The folder that holds the wnid folders: `root/imagenet-a` if that exists, else `root`
    itself when it has wnid folders in it."""
    root = Path(root).expanduser()
    if (root / DATASET_FOLDER).is_dir():
        return root / DATASET_FOLDER
    if not root.exists():
        raise FileNotFoundError(f"ImageNet-A not found: {root} does not exist. {FIX_FETCH}")
    if not root.is_dir():
        raise NotADirectoryError(f"ImageNet-A root {root} is a file, not a folder. {FIX_FETCH}")
    if not any(WNID_PATTERN.match(p.name) for p in root.iterdir() if p.is_dir()):
        raise FileNotFoundError(
            f"ImageNet-A not found in {root}: expected {root / DATASET_FOLDER}/<wnid>/*.jpg or "
            f"{root}/<wnid>/*.jpg with wnid folders like n01498041. If you extracted the archive by "
            f"hand, point `root` at the folder it created. {FIX_FETCH}"
        )
    return root


def _load_rgb(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() decodes the whole file
    except (OSError, SyntaxError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise CorruptImageError(
            f"could not decode image {path}: {err}. The file is truncated or not an image, "
            f"usually from an interrupted download or copy. Fix: delete the data set folder and run "
            f"`course-lab fetch-data` again, or delete just this file."
        ) from err


class ImageNetA(Dataset):
    """ImageNet-A in its official layout, yielding `(image, index in ImageNet-1k)`.

    `root` is the folder the archive was extracted into (holding `imagenet-a/`) or the
    `imagenet-a` folder itself; both work. Images are decoded lazily, in `__getitem__`,
    and an undecodable file raises `CorruptImageError` naming it (`check_images()` scans
    them all up front).

    `transform` maps a PIL RGB image to what the model takes. The default,
    `default_transform()`, gives a float tensor (3, 224, 224) in [0, 1] (resize 256,
    centre crop 224: ResNet-50's evaluation preprocessing), ready for
    `Normalized(resnet50)` and for batching in a DataLoader; full-size images have
    different shapes and would not batch. For the whole photo, e.g. in a gallery, use
    `load_image(i)`.

    `classes` (a count, or a list of wnids) and `per_class` (at most this many images of
    each class) take a subset, the same for the same `seed`. Class folders may be missing
    (a subset of ImageNet-A), but each one present must be an ImageNet-A wnid with images.

    Attributes: `wnids`, `indices_in_1k`, `class_names` (all 200, in column order, whatever
    the subset, so `logits[:, ds.indices_in_1k]` always has the same 200 columns);
    `selected_wnids` (the classes in this data set); `samples` [(path, 1k index)];
    `targets` [1k index].
    """

    def __init__(self, root: str | os.PathLike, classes: int | Sequence[str] | None = None,
                 per_class: int | None = None, transform: Callable | None = None, seed: int = 0):
        self.root = resolve_root(root)
        self.wnids = imagenet_a_wnids()
        self.indices_in_1k = imagenet_a_indices()
        self.class_names = imagenet_a_names()
        self.transform = transform if transform is not None else default_transform()
        found = self._scan()
        chosen = self._choose_classes(found, classes, seed)
        if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
            raise ValueError(f"per_class must be a positive integer or None, got {per_class!r}")
        column = _column_of_wnid()
        self.samples: list[tuple[Path, int]] = []
        for wnid in chosen:
            files = found[wnid]
            if per_class is not None and per_class < len(files):
                rng = np.random.default_rng([seed, column[wnid]])
                files = [files[i] for i in sorted(rng.permutation(len(files))[:per_class])]
            self.samples += [(f, self.indices_in_1k[column[wnid]]) for f in files]
        self.selected_wnids = tuple(chosen)
        self.targets = [t for _, t in self.samples]

    def _scan(self) -> dict[str, list[Path]]:
        column, wnids_1k = _column_of_wnid(), set(imagenet_1k_wnids())
        found = {}
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue  # README.txt, .ipynb_checkpoints, ...
            if folder.name not in column:
                why = ("an ImageNet-1k class but not one of ImageNet-A's 200" if folder.name in wnids_1k
                       else "not an ImageNet-A wnid (class folders are named like n01498041)")
                raise ValueError(f"unexpected folder {folder} in ImageNet-A: {folder.name!r} is {why}. "
                                 f"Fix: move it out of {self.root}.")
            files = sorted(p for p in folder.iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
            if not files:
                raise ValueError(
                    f"class folder {folder} has no images ({'/'.join(IMAGE_EXTENSIONS)}): the data set was "
                    f"probably extracted or copied half-way. Fix: delete {self.root} and run "
                    f"`course-lab fetch-data` again (or delete the empty folder)."
                )
            found[folder.name] = files
        if not found:
            raise FileNotFoundError(f"no class folders in {self.root}. {FIX_FETCH}")
        return found

    @staticmethod
    def _choose_classes(found: dict[str, list[Path]], classes, seed: int) -> list[str]:
        column = _column_of_wnid()
        present = sorted(found, key=column.__getitem__)
        if classes is None:
            return present
        if isinstance(classes, int):
            if not 1 <= classes <= len(present):
                raise ValueError(f"classes={classes}, but the data set in this folder has {len(present)} classes")
            rng = np.random.default_rng([seed, len(column)])
            picked = {present[i] for i in rng.permutation(len(present))[:classes]}
            return [w for w in present if w in picked]
        classes = [classes] if isinstance(classes, str) else list(classes)
        unknown = [w for w in classes if w not in column]
        if unknown:
            raise ValueError(f"not ImageNet-A wnids: {unknown}; see course_utils.imagenet_a.imagenet_a_wnids()")
        missing = [w for w in classes if w not in found]
        if missing:
            raise FileNotFoundError(f"classes {missing} have no folder in this copy of ImageNet-A; "
                                    f"it has {len(present)} classes, e.g. {present[:3]}")
        return sorted(set(classes), key=column.__getitem__)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        return self.transform(_load_rgb(path)), target

    def load_image(self, i: int):
        """The `i`-th photo as a full-size PIL RGB image, without the transform."""
        return _load_rgb(self.samples[i][0])

    def column(self, index_1k: int) -> int:
        """The column (0..199) of an ImageNet-1k class index among the 200 ImageNet-A classes."""
        try:
            return self.indices_in_1k.index(int(index_1k))
        except ValueError:
            raise ValueError(f"ImageNet-1k class {index_1k} is not one of ImageNet-A's 200 classes") from None

    def check_images(self) -> list[Path]:
        """Decode every image once; return the files that fail (empty when all is well)."""
        bad = []
        for path, _ in self.samples:
            try:
                _load_rgb(path)
            except CorruptImageError:
                bad.append(path)
        return bad

    def __repr__(self) -> str:
        return (f"ImageNetA({self.root}, {len(self.selected_wnids)} of 200 classes, "
                f"{len(self)} images)")


def find_imagenet_a(*, download: bool = False, progress: bool = True) -> Path:
    """The folder of the best ImageNet-A copy in the data directory: the course subset if it
    was fetched, else the full data set. With `download=True` and neither present, fetches
    the subset when its URL is configured, else the full archive."""
    from . import download as dl

    for name in ("imagenet-a-subset", "imagenet-a"):
        folder = dl.data_dir() / dl.ASSETS[name].extract_to
        if dl.is_complete(folder):
            return folder
    if not download:
        raise FileNotFoundError(f"ImageNet-A has not been fetched into {dl.data_dir()}. {FIX_FETCH}")
    return dl.fetch(dl.imagenet_a_asset_name(), progress=progress)


# --------------------------------------------------------------------------- stand-in for the quick profile

FIXTURE_SIGNATURE = "ImageNet-A layout fixture made by course_utils"
FIXTURE_JPEG_QUALITY = 90


def _sample_photo_paths() -> list[Path]:
    spec = importlib.util.find_spec("sklearn")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        paths = sorted((Path(location) / "datasets" / "images").glob("*.jpg"))
        if paths:
            return paths
    return []


@functools.lru_cache(maxsize=1)
def _sample_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two bundled photos (china.jpg, flower.jpg) as uint8 arrays (427, 640, 3).
    Read with PIL from scikit-learn's folder, which is what `load_sample_images` does, without
    importing scikit-learn."""
    from PIL import Image

    paths = _sample_photo_paths()
    if paths:
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert("RGB")))
        return tuple(out)
    from sklearn.datasets import load_sample_images

    return tuple(load_sample_images().images)


def fixture_wnids(n_classes: int) -> tuple[str, ...]:
    """The wnids the fixture uses: `n_classes` evenly spread over the 200 columns, from column 0
    (n01498041, stingray) on."""
    if not 1 <= n_classes <= 200:
        raise ValueError(f"n_classes must be between 1 and 200, got {n_classes}")
    wnids = imagenet_a_wnids()
    return tuple(wnids[(k * 200) // n_classes] for k in range(n_classes))


def _fixture_image(photos, class_rank: int, column: int, k: int, seed: int, size: int) -> bytes:
    from PIL import Image

    class_rng = np.random.default_rng([seed, column])
    gains = class_rng.uniform(0.6, 1.4, size=3)  # a colour cast per class
    photo = photos[class_rank % len(photos)]
    rng = np.random.default_rng([seed, column, k])
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    image = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    pixels = pixels * (gains * rng.uniform(0.85, 1.15, size=3)) + rng.normal(0, 12, size=3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8)).save(
        buffer, format="JPEG", quality=FIXTURE_JPEG_QUALITY)
    return buffer.getvalue()


def make_imagenet_a_fixture(root: str | os.PathLike | None = None, n_classes: int = 10, per_class: int = 8,
                            seed: int = 0, size: int = 224) -> Path:
    """Build a small stand-in for ImageNet-A at `root/imagenet-a` and return that folder.

    The official layout (`<wnid>/*.jpg` and a README.txt) under `n_classes` real ImageNet-A
    wnids (`fixture_wnids`), each with `per_class` JPEGs of `size`x`size`: random crops,
    flips and colour shifts of scikit-learn's two bundled photos, with a colour cast per
    class. The same arguments give the same bytes (fixed JPEG quality, no timestamps),
    for the same Pillow. Default `root`: `<data dir>/imagenet-a-fixture`.

    A folder this function made before is rebuilt; any other existing `root/imagenet-a`
    is left alone and raises FileExistsError.
    """
    from .data import data_dir

    if per_class < 1 or size < 8:
        raise ValueError(f"per_class must be >= 1 and size >= 8, got per_class={per_class}, size={size}")
    root = Path(root).expanduser() if root is not None else data_dir() / "imagenet-a-fixture"
    target = root / DATASET_FOLDER
    if target.exists():
        readme = target / "README.txt"
        if not (readme.is_file() and FIXTURE_SIGNATURE in readme.read_text(errors="replace")):
            raise FileExistsError(f"{target} exists and is not a fixture this function made; "
                                  f"choose another root or delete it")
    wnids = fixture_wnids(n_classes)
    photos = _sample_photos()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DATASET_FOLDER}.partial-", dir=root))
    try:
        column = _column_of_wnid()
        for rank, wnid in enumerate(wnids):
            (tmp / wnid).mkdir()
            for k in range(per_class):
                data = _fixture_image(photos, rank, column[wnid], k, seed, size)
                (tmp / wnid / f"fixture_{k:03d}.jpg").write_bytes(data)
        names = imagenet_a_names()
        lines = [
            FIXTURE_SIGNATURE,
            "",
            "NOT ImageNet-A. A stand-in with ImageNet-A's layout, for running the lab offline",
            "(the quick profile). Images are random crops, flips and colour shifts of the two",
            "photos scikit-learn ships (china.jpg, flower.jpg); their labels carry no meaning.",
            "The real data set: Hendrycks et al., Natural Adversarial Examples, CVPR 2021,",
            "https://github.com/hendrycks/natural-adv-examples",
            "",
            f"n_classes={n_classes} per_class={per_class} seed={seed} size={size} jpeg_quality={FIXTURE_JPEG_QUALITY}",
            "",
            *[f"{w}\t{names[column[w]]}" for w in wnids],
        ]
        (tmp / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- maintainers: the course subset

def _tar_add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def _tar_add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def make_imagenet_a_subset_tar(source: str | os.PathLike, dest: str | os.PathLike, *,
                               classes: int | Sequence[str] | None = None, per_class: int | None = None,
                               seed: int = 0) -> str:
    """Write a tar of a subset of ImageNet-A in the official layout and return its SHA-256.

    For course maintainers: this is how the course-hosted subset is made. `source` is any
    root `ImageNetA` accepts; the subset is `ImageNetA(source, classes, per_class, seed=seed)`.
    The tar is reproducible (sorted members, mtime 0, no owner names), so the same inputs
    give the same hash; publish the file and set COURSE_IMAGENET_A_SUBSET_URL /
    COURSE_IMAGENET_A_SUBSET_SHA256 (or the registry entry in course_utils.download).
    """
    subset = ImageNetA(source, classes=classes, per_class=per_class, seed=seed)
    dest = Path(dest)
    by_class: dict[str, list[Path]] = {}
    for path, _ in subset.samples:
        by_class.setdefault(path.parent.name, []).append(path)
    readme = "\n".join([
        "A subset of ImageNet-A for CS3485 lab 4, made with course_utils.imagenet_a.make_imagenet_a_subset_tar",
        f"classes={len(by_class)} images={len(subset)} per_class={per_class} seed={seed}",
        "ImageNet-A: Hendrycks, Zhao, Basart, Steinhardt, Song. Natural Adversarial Examples. CVPR 2021.",
        "https://github.com/hendrycks/natural-adv-examples",
    ]) + "\n"
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _tar_add_dir(tar, DATASET_FOLDER)
        _tar_add_bytes(tar, f"{DATASET_FOLDER}/README.txt", readme.encode())
        for wnid in sorted(by_class):
            _tar_add_dir(tar, f"{DATASET_FOLDER}/{wnid}")
            for path in sorted(by_class[wnid]):
                _tar_add_bytes(tar, f"{DATASET_FOLDER}/{wnid}/{path.name}", path.read_bytes())
    os.replace(tmp, dest)
    digest = hashlib.sha256()
    with open(dest, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "CorruptImageError", "ImageNetA", "default_transform", "find_imagenet_a", "fixture_wnids",
    "imagenet_1k_names", "imagenet_1k_wnids", "imagenet_a_indices", "imagenet_a_names", "imagenet_a_wnids",
    "make_imagenet_a_fixture", "make_imagenet_a_subset_tar", "resolve_root", "wnid_name",
]
