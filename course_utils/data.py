"""Data sets as in-memory image tensors in [0, 1], and the loader every notebook uses.

`load_digits` is the offline default: scikit-learn's bundled handwritten digits,
upsampled to 32x32 RGB. With `background="photos"` it builds Digits-M, the digits blended
onto crops of scikit-learn's bundled photos the way MNIST-M was built (Ganin & Lempitsky,
"Unsupervised Domain Adaptation by Backpropagation", 2015): backgrounds that carry no
label, so that features learned without labels have something to prove.
"""
from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

DATA_DIR_ENV = "COURSE_DATA_DIR"
DIGIT_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")


def data_dir() -> Path:
    """The one directory every download goes to: `$COURSE_DATA_DIR`, else ~/.cache/course_utils."""
    return Path(os.environ.get(DATA_DIR_ENV) or "~/.cache/course_utils").expanduser()


class ImageTensorDataset(Dataset):
    """Images (N, C, H, W) float in [0, 1] with integer labels, held in memory.

    Indexing with a list of indices (`__getitems__`) returns a whole batch by one tensor
    index, so `make_loader` serves batches without a per-sample Python loop.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]):
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected images (N, C, H, W) and N labels, got {tuple(images.shape)} and {len(labels)}")
        self.images, self.labels, self.classes = images, labels.long(), tuple(classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels

    def subset(self, n: int | None = None, *, per_class: int | None = None, seed: int = 0) -> "ImageTensorDataset":
        """A deterministic stratified subset: `per_class` images of each class, or `n` in all
        (classes kept in proportion). With neither, the data set itself."""
        if n is None and per_class is None:
            return self
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=g)
        labels = self.labels[order]
        # rank of each image within its class, in the shuffled order
        rank = torch.zeros_like(labels)
        for c in labels.unique():
            members = labels == c
            rank[members] = torch.arange(int(members.sum()))
        if per_class is not None:
            keep = order[rank < per_class]
        else:
            keep = order[torch.argsort(rank, stable=True)[:n]]  # round-robin over classes
        keep, _ = keep.sort()
        return ImageTensorDataset(self.images[keep], self.labels[keep], self.classes)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


@functools.lru_cache(maxsize=4)
def _digits(size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    y = torch.from_numpy(bunch.target).long()
    train_idx, _ = train_test_split(np.arange(len(y)), test_size=0.2, stratify=bunch.target, random_state=0)
    is_train = np.zeros(len(y), dtype=bool)
    is_train[train_idx] = True
    return x, y, is_train


def load_digits(split: str, size: int = 32, background: str | None = None, seed: int = 0) -> ImageTensorDataset:
    """scikit-learn's 1,797 handwritten digits as 3-channel `size`x`size` images in [0, 1].

    The split is stratified and fixed (80% train, 20% test: 1,437 / 360 images).
    `background="photos"` gives Digits-M (see `digits_m_backgrounds`); `seed` picks its
    backgrounds, and the same seed always gives the same images.
    """
    _check_split(split)
    if background not in (None, "photos"):
        raise ValueError(f"background must be None or 'photos', got {background!r}")
    x, y, is_train = _digits(size)
    mask = torch.from_numpy(is_train if split == "train" else ~is_train)
    digits, labels = x[mask], y[mask]
    if background is None:
        images = digits.expand(-1, 3, -1, -1).contiguous()
    else:
        bg = digits_m_backgrounds(len(digits), split, size, seed=seed)
        images = (bg - digits).abs()  # MNIST-M's blend: per-channel |background - digit|
    return ImageTensorDataset(images, labels, DIGIT_CLASSES)


# Downscale factors applied to the photos before cropping: a crop then covers from 2x to
# 6x its size of the original photo, so backgrounds range from smooth to busy texture.
DIGITS_M_SCALES = (1 / 2, 1 / 3, 1 / 4, 1 / 6)
# Train crops come from the left 70% of every photo, test crops from the right 30%.
DIGITS_M_TRAIN_FRACTION = 0.7


@functools.lru_cache(maxsize=1)
def _sample_photos() -> list[torch.Tensor]:
    from sklearn.datasets import load_sample_images

    return [torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255) for img in load_sample_images().images]


@functools.lru_cache(maxsize=1)
def _downscaled_photos() -> dict[tuple[int, int], torch.Tensor]:
    """Every bundled photo at every scale, downscaled with antialiasing."""
    out = {}
    for p, photo in enumerate(_sample_photos()):
        for s, scale in enumerate(DIGITS_M_SCALES):
            h, w = round(photo.shape[1] * scale), round(photo.shape[2] * scale)
            out[p, s] = F.interpolate(photo[None], size=(h, w), mode="bilinear", antialias=True,
                                      align_corners=False)[0].clamp_(0, 1)
    return out


def digits_m_backgrounds(n: int, split: str, size: int = 32, seed: int = 0) -> torch.Tensor:
    """`n` random `size`x`size` crops of scikit-learn's bundled photos, (n, 3, size, size).

    Each crop picks a photo and a downscale factor at random, then a position inside the
    split's region of that photo (train: left 70%, test: right 30%), so no test background
    is ever seen in training. Deterministic in (`n`, `split`, `size`, `seed`).
    """
    _check_split(split)
    photos = _downscaled_photos()
    largest = min(min(img.shape[1], int(img.shape[2] * DIGITS_M_TRAIN_FRACTION),
                      img.shape[2] - int(img.shape[2] * DIGITS_M_TRAIN_FRACTION)) for img in photos.values())
    if not 0 < size <= largest:
        raise ValueError(f"size must be in 1..{largest}: the smallest photo scale's test region is {largest} px wide, "
                         f"got size={size}; make larger backgrounds by upsampling {largest}-px crops")
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    n_photos, n_scales = len(_sample_photos()), len(DIGITS_M_SCALES)
    photo_idx = torch.randint(n_photos, (n,), generator=g)
    scale_idx = torch.randint(n_scales, (n,), generator=g)
    u_row, u_col = torch.rand(n, generator=g), torch.rand(n, generator=g)
    out = torch.empty(n, 3, size, size)
    offsets = torch.arange(size)
    for (p, s), img in photos.items():
        members = ((photo_idx == p) & (scale_idx == s)).nonzero().flatten()
        if len(members) == 0:
            continue
        h, w = img.shape[1:]
        split_col = int(w * DIGITS_M_TRAIN_FRACTION)
        lo, hi = (0, split_col - size) if split == "train" else (split_col, w - size)
        rows = (u_row[members] * (h - size + 1)).long()
        cols = lo + (u_col[members] * (hi - lo + 1)).long()
        r = (rows[:, None] + offsets)[:, :, None]  # (m, size, 1)
        c = (cols[:, None] + offsets)[:, None, :]  # (m, 1, size)
        out[members] = img[:, r, c].permute(1, 0, 2, 3)  # (3, m, size, size) -> (m, 3, size, size)
    return out


CIFAR10_FOLDER = "cifar-10-batches-py"  # what cifar-10-python.tar.gz extracts to
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def load_cifar10(split: str, root: str | os.PathLike | None = None) -> ImageTensorDataset:
    """CIFAR-10 as tensors in [0, 1], downloaded once into the data directory.

    `root` (default `<data dir>/cifar10`) is the folder that holds `cifar-10-batches-py/`,
    the official archive's python version. A missing copy is fetched with the course's
    downloader (`course_utils.download`, asset "cifar10": verified by SHA-256, resumable,
    extracted safely), so the URL and hash can be pointed at a mirror like every other
    asset (`COURSE_CIFAR10_URL` / `COURSE_CIFAR10_SHA256`).
    """
    from . import download as dl

    _check_split(split)
    folder = Path(root).expanduser() if root is not None else data_dir() / dl.ASSETS["cifar10"].extract_to
    batches = folder / CIFAR10_FOLDER
    if not all((batches / f).is_file() for files in CIFAR10_FILES.values() for f in files):
        try:
            dl.fetch("cifar10", into=None if root is None else folder)
        except dl.DownloadError as err:
            raise type(err)(
                f"CIFAR-10 is not in {folder} and could not be fetched. {err}\nOr extract "
                f"cifar-10-python.tar.gz (from {dl.get_asset('cifar10').url}) into {folder} yourself, so that "
                f"{batches} holds data_batch_1..5 and test_batch."
            ) from err
    parts = [_read_cifar10_batch(batches / name) for name in CIFAR10_FILES[split]]
    images = torch.from_numpy(np.concatenate([x for x, _ in parts])).view(-1, 3, 32, 32).float().div_(255)
    labels = torch.as_tensor(np.concatenate([y for _, y in parts]), dtype=torch.long)
    return ImageTensorDataset(images, labels, CIFAR10_CLASSES)


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file of CIFAR-10's python version: (uint8 images (N, 3072), labels (N,)).

    The format is the one documented at https://www.cs.toronto.edu/~kriz/cifar.html: a
    pickled dict whose b"data" rows are 1024 red, 1024 green, then 1024 blue values of a
    32x32 image, row-major, and whose b"labels" are 0..9. It is read here rather than by
    torchvision's CIFAR10, which downloads from one hard-coded URL and checks hard-coded
    per-file MD5s, so it accepts neither a mirror nor the stand-in the tests serve. The
    unpickler only builds NumPy arrays and plain containers: a tampered file cannot run code.
    """
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise RuntimeError(
            f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}): the copy is incomplete or "
            f"damaged. Fix: delete {path.parent.parent} and run `course-lab fetch-data cifar10` again."
        ) from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data) or not np.all((labels >= 0) & (labels < 10)):
        raise RuntimeError(f"{path} does not hold CIFAR-10 images (data {data.shape}, {len(labels)} labels). "
                           f"Fix: delete {path.parent.parent} and run `course-lab fetch-data cifar10` again.")
    return data, labels


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # Python 3's protocol-2 bytes

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def load_dataset(name: str, split: str, *, seed: int = 0) -> ImageTensorDataset:
    """A data set by its profile name: "digits", "digits-m" or "cifar10"."""
    if name == "digits":
        return load_digits(split)
    if name == "digits-m":
        return load_digits(split, background="photos", seed=seed)
    if name == "cifar10":
        return load_cifar10(split)
    raise ValueError(f"unknown data set {name!r}: choose 'digits', 'digits-m' or 'cifar10'")


def _batch_collate(batch):
    return batch  # ImageTensorDataset.__getitems__ has already built the batch


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, device: torch.device | str | None = None,
                workers: int | None = None, seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader that does the right thing for where the data lives.

    In-memory `ImageTensorDataset`s are served a whole batch per index and without worker
    processes (workers only add copying for data already in memory); other data sets get
    worker processes to decode images in parallel. Memory is pinned only when the batches go
    to CUDA (`runtime.use_pinned_memory`; `device` defaults to `get_device()`), so `fit` can
    copy them with `non_blocking=True`. Shuffling is seeded.
    """
    from .runtime import get_device, use_pinned_memory

    in_memory = isinstance(dataset, ImageTensorDataset)
    if workers is None:
        workers = 0 if in_memory else min(8, os.cpu_count() or 1)
    pin = use_pinned_memory(device if device is not None else get_device())
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=workers,
        pin_memory=pin, collate_fn=_batch_collate if in_memory else None,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        persistent_workers=workers > 0,
    )


from .imagenet_a import ImageNetA  # noqa: E402,F401  (DESIGN.md's public name course_utils.data.ImageNetA)
