"""Hidden checks of notebook 05 (patch localization).

The geometry the exercise specifies: the centre patch's top-left pixel is at
((H - patch_size) // 2, (W - patch_size) // 2); the neighbour with label L is
(dr, dc) * (patch_size + gap) away from it, (dr, dc) = NEIGHBOR_OFFSETS[L] (row-major,
0 top-left .. 7 bottom-right); then each patch moves by its own random integer shift in
[-jitter, jitter] on each axis.
"""
from __future__ import annotations

from typing import Callable

import torch

from . import call_student

NEIGHBOR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
LABEL_NAMES = ("top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right")


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """A (3, H, W) image whose pixels say where they are: row / 256, column / 256, and a checksum.

    Exact in float32 for images up to 256 pixels, so a patch cut from it tells its position.
    """
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([rows / 256, cols / 256, ((rows * 7 + cols * 3) % 11) / 16])


def _position(image: torch.Tensor, patch: torch.Tensor, size: int, what: str) -> tuple[int, int]:
    """Top-left (row, col) of `patch` in the coordinate image, after checking it is an exact crop."""
    assert isinstance(patch, torch.Tensor), f"the {what} patch should be a tensor, got {type(patch).__name__}"
    assert patch.shape == (image.shape[0], size, size), (
        f"the {what} patch should have shape {(image.shape[0], size, size)} (channels, patch_size, patch_size), "
        f"got {tuple(patch.shape)}. Is it cut from inside the image? A slice that starts at a negative index "
        f"or runs past the border gives a smaller patch")
    r, c = round(float(patch[0, 0, 0]) * 256), round(float(patch[1, 0, 0]) * 256)
    inside = 0 <= r <= image.shape[1] - size and 0 <= c <= image.shape[2] - size
    assert inside and torch.equal(patch, image[:, r:r + size, c:c + size]), (
        f"the {what} patch is not a plain {size}x{size} crop of the image: cut it with "
        f"image[:, row:row + patch_size, col:col + patch_size], without resizing, flipping or recolouring")
    return r, c


def _call(patch_pair: Callable, image: torch.Tensor, label: int, patch_size: int, gap: int, jitter: int,
          generator: torch.Generator | None):
    from .. import augment

    out = call_student(patch_pair, image, label, patch_size, gap, jitter=jitter, generator=generator,
                       what=f"an image of shape {tuple(image.shape)}, label={label}, patch_size={patch_size}, "
                            f"gap={gap}, jitter={jitter}",
                       forbid=(augment.PatchLocalization.sample, augment.PatchLocalization.__call__,
                               augment._gather_patches),
                       reason="write patch_pair yourself with slicing, not with the library's PatchLocalization",
                       may_change=[(generator, "state")] if generator is not None else ())
    assert isinstance(out, (tuple, list)) and len(out) == 2, \
        f"patch_pair should return a pair (center, neighbor), got {type(out).__name__}"
    center = _position(image, out[0], patch_size, "centre")
    neighbor = _position(image, out[1], patch_size, "neighbour")
    return center, neighbor


def _describe_offset(got: tuple[int, int], label: int, stride: int, patch_size: int, gap: int) -> str:
    dr, dc = NEIGHBOR_OFFSETS[label]
    want = (dr * stride, dc * stride)
    msg = (f"label {label} ({LABEL_NAMES[label]}) should put the neighbour {want} pixels (rows, columns) from the "
           f"centre patch, i.e. (dr, dc) * (patch_size + gap) with (dr, dc) = {(dr, dc)}; got {got}.")
    if got == (want[1], want[0]):
        return msg + " Rows and columns are swapped: the first index of an image is the row (vertical)."
    if got == (dr * patch_size, dc * patch_size):
        return msg + " The gap is missing: neighbours are patch_size + gap apart."
    if got == (dr * (patch_size + 2 * gap), dc * (patch_size + 2 * gap)):
        return msg + " The gap is counted twice: neighbours are patch_size + gap apart."
    if got == (dr * gap, dc * gap):
        return msg + " The patch size is missing: neighbours are patch_size + gap apart."
    for other, (odr, odc) in enumerate(NEIGHBOR_OFFSETS):
        if got == (odr * stride, odc * stride):
            return msg + (f" That is where label {other} ({LABEL_NAMES[other]}) goes: labels run row by row, "
                          f"0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.")
    return msg


def _check_exact_geometry(patch_pair: Callable, height: int, width: int, patch_size: int, gap: int) -> None:
    image = coordinate_image(height, width)
    want_center = ((height - patch_size) // 2, (width - patch_size) // 2)
    stride = patch_size + gap
    for label in range(8):
        center, neighbor = _call(patch_pair, image, label, patch_size, gap, 0, torch.Generator().manual_seed(label))
        assert center == want_center, (
            f"with jitter=0 the centre patch of a {height}x{width} image should start at row, column {want_center} "
            f"((H - patch_size) // 2, (W - patch_size) // 2), got {center}")
        got = (neighbor[0] - center[0], neighbor[1] - center[1])
        want = (NEIGHBOR_OFFSETS[label][0] * stride, NEIGHBOR_OFFSETS[label][1] * stride)
        assert got == want, _describe_offset(got, label, stride, patch_size, gap)


def _check_jitter(patch_pair: Callable, patch_size: int, gap: int, jitter: int, draws: int = 120) -> None:
    # the tightest image that holds the grid and its jitter margins: every patch must stay inside
    side = 3 * patch_size + 2 * gap + 2 * jitter
    image = coordinate_image(side, side)
    home = ((side - patch_size) // 2, (side - patch_size) // 2)
    stride = patch_size + gap
    g = torch.Generator().manual_seed(7)
    shifts, relative = [], set()
    for d in range(draws):
        label = d % 8
        center, neighbor = _call(patch_pair, image, label, patch_size, gap, jitter, g)
        dr, dc = NEIGHBOR_OFFSETS[label]
        c_shift = (center[0] - home[0], center[1] - home[1])
        n_shift = (neighbor[0] - home[0] - dr * stride, neighbor[1] - home[1] - dc * stride)
        for what, shift in (("centre", c_shift), ("neighbour", n_shift)):
            assert max(abs(shift[0]), abs(shift[1])) <= jitter, (
                f"with jitter={jitter} the {what} patch should move at most {jitter} pixels from its place on each "
                f"axis, but it moved {shift} (label {label}, patch_size={patch_size}, gap={gap})")
        shifts += [c_shift, n_shift]
        relative.add((n_shift[0] - c_shift[0], n_shift[1] - c_shift[1]))
    rows = {s[0] for s in shifts}
    cols = {s[1] for s in shifts}
    assert rows == set(range(-jitter, jitter + 1)) and cols == set(range(-jitter, jitter + 1)), (
        f"with jitter={jitter}, over {draws} calls the patches should move by every integer in "
        f"[-{jitter}, {jitter}] on both axes (both ends included); got row shifts {sorted(rows)} and column shifts "
        f"{sorted(cols)}")
    assert len(relative) > 1, (
        "the centre and the neighbour always move by the same shift, so the gap between them never changes; "
        "draw an independent shift for each patch")


def _check_generator(patch_pair: Callable) -> None:
    image = coordinate_image(40, 40)
    first = [_call(patch_pair, image, label, 8, 3, 2, torch.Generator().manual_seed(11)) for label in range(8)]
    again = [_call(patch_pair, image, label, 8, 3, 2, torch.Generator().manual_seed(11)) for label in range(8)]
    assert first == again, ("two calls with generators seeded alike gave different patches: draw the jitter with "
                            "torch.randint(..., generator=generator)")
    _call(patch_pair, image, 3, 8, 3, 2, None)  # the global random number generator when there is none


def check_patch_pair(patch_pair: Callable) -> None:
    """Notebook 05: each label's offset (row-major), rows/cols not swapped, gap and jitter, patches inside."""
    _check_exact_geometry(patch_pair, 32, 32, 8, 2)
    _check_exact_geometry(patch_pair, 41, 64, 9, 4)  # not square: rows and columns must not be swapped
    _check_exact_geometry(patch_pair, 26, 30, 8, 1)
    _check_jitter(patch_pair, 8, 2, 1)
    _check_jitter(patch_pair, 6, 3, 2)
    _check_generator(patch_pair)
