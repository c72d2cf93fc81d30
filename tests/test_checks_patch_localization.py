"""Notebook 05's hidden checks accept the solution and reject the usual mistakes."""
import pytest
import torch

from course_utils.augment import PatchLocalization
from course_utils.checks.patch_localization import NEIGHBOR_OFFSETS, check_patch_pair, coordinate_image

OFFSETS = NEIGHBOR_OFFSETS


def make_patch_pair(offsets=OFFSETS, stride=lambda p, g: p + g, center=lambda h, w, p: ((h - p) // 2, (w - p) // 2),
                    jitter_fn=None, swap=False, shared_jitter=False):
    """The solution, with one ingredient replaceable to build each typical mistake."""

    def patch_pair(image, label, patch_size, gap, jitter=0, generator=None):
        _, h, w = image.shape
        top, left = center(h, w, patch_size)
        dr, dc = offsets[label]
        if swap:
            dr, dc = dc, dr
        s = stride(patch_size, gap)

        def shift():
            if jitter_fn is not None:
                return jitter_fn(jitter, generator)
            return torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()

        jc = shift()
        jn = jc if shared_jitter else shift()
        r, c = top + jc[0], left + jc[1]
        center_patch = image[:, r:r + patch_size, c:c + patch_size]
        r, c = top + dr * s + jn[0], left + dc * s + jn[1]
        return center_patch, image[:, r:r + patch_size, c:c + patch_size]

    return patch_pair


solution = make_patch_pair()


def library_pair(image, label, patch_size, gap, jitter=0, generator=None):
    s = PatchLocalization(patch_size, gap, jitter, color=None, generator=generator).sample(image[None], label)
    return s.center[0], s.neighbor[0]


def modifies_image(image, label, patch_size, gap, jitter=0, generator=None):
    center, neighbor = solution(image, label, patch_size, gap, jitter, generator)
    center, neighbor = center.clone(), neighbor.clone()
    image.mul_(1.0)[0, 0, 0] += 1e-3
    return center, neighbor


def resized(image, label, patch_size, gap, jitter=0, generator=None):
    center, neighbor = solution(image, label, patch_size, gap, jitter, generator)
    big = torch.nn.functional.interpolate(neighbor[None], scale_factor=2, mode="bilinear")
    return center, torch.nn.functional.interpolate(big, size=neighbor.shape[-2:], mode="bilinear")[0]


WRONG = {
    "rows and columns swapped": make_patch_pair(swap=True),
    "column-major labels": make_patch_pair(offsets=((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1))),
    "clockwise labels": make_patch_pair(offsets=((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))),
    "no gap": make_patch_pair(stride=lambda p, g: p),
    "gap counted twice": make_patch_pair(stride=lambda p, g: p + 2 * g),
    "centre at the image centre pixel": make_patch_pair(center=lambda h, w, p: (h // 2, w // 2)),
    "centre transposed on non-square images": make_patch_pair(center=lambda h, w, p: ((w - p) // 2, (h - p) // 2)),
    "jitter ignored": make_patch_pair(jitter_fn=lambda j, g: [0, 0]),
    "jitter excludes the upper end": make_patch_pair(jitter_fn=lambda j, g: torch.randint(-j, j, (2,), generator=g).tolist()),
    "jitter doubled": make_patch_pair(jitter_fn=lambda j, g: (2 * torch.randint(-j, j + 1, (2,), generator=g)).tolist()),
    "jitter only positive": make_patch_pair(jitter_fn=lambda j, g: torch.randint(0, j + 1, (2,), generator=g).tolist()),
    "same jitter for both patches": make_patch_pair(shared_jitter=True),
    "generator ignored": make_patch_pair(jitter_fn=lambda j, g: torch.randint(-j, j + 1, (2,)).tolist()),
    "modifies the image": modifies_image,
    # tampers with the fixture: the check's generator reseeded, and the coordinate image rewritten
    "tamper: reseeds the generator": lambda image, label, p, g, jitter=0, generator=None: solution(
        image, label, p, g, jitter, generator.manual_seed(0) if generator is not None else None),
    "tamper: rewrites the image": lambda image, label, p, g, jitter=0, generator=None: (
        image.zero_(), solution(image, label, p, g, jitter, generator))[1],
    "resizes a patch": resized,
    "returns one patch": lambda image, label, p, g, jitter=0, generator=None: solution(image, label, p, g, jitter, generator)[0],
    "calls the library": library_pair,
}


def test_solution_passes():
    check_patch_pair(solution)


def test_solution_matches_the_library_geometry_without_jitter():
    """With jitter 0 and the grid in the middle, the exercise's geometry is PatchLocalization's."""
    image = coordinate_image(28, 28)  # PatchLocalization(8, 2, 0) needs exactly 28 pixels: one grid position
    for label in range(8):
        s = PatchLocalization(8, 2, 0, color=None).sample(image[None], label)
        center, neighbor = solution(image, label, 8, 2)
        assert torch.equal(center, s.center[0]) and torch.equal(neighbor, s.neighbor[0])


@pytest.mark.parametrize("mistake", WRONG)
def test_typical_mistakes_fail(mistake):
    with pytest.raises(AssertionError):
        check_patch_pair(WRONG[mistake])


@pytest.mark.parametrize("mistake, message", [
    ("rows and columns swapped", "swapped"), ("column-major labels", "swapped"), ("clockwise labels", "row by row"), ("no gap", "gap is missing"),
    ("jitter ignored", "every integer"), ("same jitter for both patches", "independent shift"),
    ("generator ignored", "generator"), ("calls the library", "PatchLocalization"),
])
def test_messages_name_the_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        check_patch_pair(WRONG[mistake])
