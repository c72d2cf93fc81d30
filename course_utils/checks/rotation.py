"""Hidden checks of notebook 04 (rotation pretext task)."""
from __future__ import annotations

from typing import Callable

import torch

from . import Mistake, call_student

DEGREES = ("0", "90", "180", "270")


def _call(rotate_batch: Callable, x: torch.Tensor):
    from .. import augment

    out = call_student(rotate_batch, x, what=f"a batch of shape {tuple(x.shape)}",
                       forbid=(augment.rotate_batch, augment.rotation_batch_transform),
                       reason="write rotate_batch yourself with torch.rot90, not with the library's rotate_batch")
    assert isinstance(out, (tuple, list)) and len(out) == 2, \
        f"rotate_batch should return a pair (x_rot, labels), got {type(out).__name__}" + \
        (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
    x_rot, labels = out
    assert isinstance(x_rot, torch.Tensor) and isinstance(labels, torch.Tensor), \
        f"x_rot and labels should be tensors, got {type(x_rot).__name__} and {type(labels).__name__}"
    n = len(x)
    assert x_rot.shape == (4 * n, *x.shape[1:]), \
        f"for {n} images of shape {tuple(x.shape[1:])} expected x_rot of shape {(4 * n, *x.shape[1:])} " \
        f"(all four rotations of every image), got {tuple(x_rot.shape)}"
    assert labels.shape == (4 * n,), f"expected {4 * n} labels, one per rotated image, got shape {tuple(labels.shape)}"
    assert labels.dtype == torch.long, \
        f"labels should be integers of dtype torch.long (what cross_entropy takes), got {labels.dtype}"
    assert x_rot.dtype == x.dtype, f"x_rot should keep the images' dtype {x.dtype}, got {x_rot.dtype}"
    return x_rot, labels


def _source(x: torch.Tensor, image: torch.Tensor) -> tuple[int, int] | None:
    """(index, k) such that image == rot90(x[index], k) exactly, or None."""
    for k in range(4):
        rotated = torch.rot90(x, k, dims=(2, 3))
        hits = (rotated == image).flatten(1).all(1).nonzero().flatten()
        if len(hits):
            return int(hits[0]), k
    return None


def _check_alignment(x: torch.Tensor, x_rot: torch.Tensor, labels: torch.Tensor) -> None:
    n = len(x)
    found = []
    for i in range(len(x_rot)):
        source = _source(x, x_rot[i])
        assert source is not None, (
            f"x_rot[{i}] is not an exact rotation of any input image. Rotate with torch.rot90(image, k, "
            f"dims=(-2, -1)): it moves pixels without interpolation; a flip or a transpose is not a rotation")
        found.append(source)
    ks = torch.tensor([k for _, k in found])
    if not torch.equal(labels.cpu(), ks):
        if torch.equal(labels.cpu(), (4 - ks) % 4) and (ks % 2 == 1).any():
            raise Mistake(
                "labels 1 and 3 swapped",
                "labels 1 and 3 are swapped: label k means a rotation by k * 90 degrees counter-clockwise, "
                "torch.rot90(image, k, dims=(-2, -1)); your images are rotated the other way")
        i = int((labels.cpu() != ks).nonzero()[0])
        raise Mistake(
            "labels not aligned with the images",
            f"labels are not aligned with the rotated images: x_rot[{i}] is image {found[i][0]} rotated by "
            f"{DEGREES[found[i][1]]} degrees, so labels[{i}] should be {found[i][1]}, got {int(labels[i])}. "
            f"Build the labels in the same order as the images")
    for j in range(n):
        ks_j = sorted(k for src, k in found if src == j)
        assert ks_j == [0, 1, 2, 3], (
            f"every image should appear once with each rotation 0, 1, 2, 3; image {j} appears with "
            f"rotations {ks_j}")


def check_rotate_batch(rotate_batch: Callable) -> None:
    """Notebook 04: 4N images, exact rot90 rotations, labels aligned, all four per image, input kept."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 3, 6, 6, generator=g)
    x_rot, labels = _call(rotate_batch, x)
    _check_alignment(x, x_rot, labels)
    # one gray image in double precision, and a batch of larger images
    one = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    _check_alignment(one, *_call(rotate_batch, one))
    big = torch.rand(3, 3, 32, 32, generator=g)
    _check_alignment(big, *_call(rotate_batch, big))
