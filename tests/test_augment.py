"""course_utils.augment: rotations, patch pairs and SimCLR views do what the papers say."""
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from course_utils.augment import (GALLERY_PANELS, PatchLocalization, SimCLRViews, color_jitter, gallery_transforms,
                                  rotate_batch, rotation_batch_transform, to_grayscale)
from course_utils.augment import _gaussian_blur

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def coordinate_images(n: int, h: int, w: int | None = None) -> torch.Tensor:
    """Images whose channels are (row, col, image index): a patch says where it came from."""
    w = w or h
    rows = torch.arange(h, dtype=torch.float64).view(1, h, 1).expand(n, h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, w).expand(n, h, w)
    index = torch.arange(n, dtype=torch.float64).view(n, 1, 1).expand(n, h, w)
    return torch.stack([rows, cols, index], 1)


# --------------------------------------------------------------------------- rotate_batch


def test_rotate_batch_blocks_are_exact_rot90():
    x = torch.rand(5, 3, 8, 8)
    x_rot, labels = rotate_batch(x)
    assert x_rot.shape == (20, 3, 8, 8) and labels.shape == (20,)
    for k in range(4):
        assert torch.equal(x_rot[5 * k:5 * (k + 1)], torch.rot90(x, k, dims=(2, 3))), f"block {k} is not rot90 by {k}"
        assert (labels[5 * k:5 * (k + 1)] == k).all()


def test_rotate_batch_labels_aligned_and_all_four_rotations_of_every_image():
    x = torch.rand(6, 3, 7, 7)
    x_rot, labels = rotate_batch(x)
    seen = {i: set() for i in range(6)}
    for j in range(len(x_rot)):
        undone = torch.rot90(x_rot[j], -int(labels[j]), dims=(1, 2))  # undo the rotation the label claims
        matches = [i for i in range(6) if torch.equal(undone, x[i])]
        assert len(matches) == 1, f"row {j}: rotating back by its label does not give an input image"
        seen[matches[0]].add(int(labels[j]))
    assert all(s == {0, 1, 2, 3} for s in seen.values())


def test_rotate_batch_keeps_device_dtype_and_input():
    for dtype in (torch.float64, torch.float16, torch.uint8):
        x = (torch.rand(3, 1, 4, 4) * 200).to(dtype)
        before = x.clone()
        x_rot, labels = rotate_batch(x)
        assert x_rot.dtype == dtype and x_rot.device == x.device and labels.dtype == torch.long
        assert torch.equal(x, before)
    assert rotation_batch_transform(x, torch.zeros(3))[0].shape == (12, 1, 4, 4)


def test_rotate_batch_rejects_non_square_and_unbatched():
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="batch"):
        rotate_batch(torch.rand(3, 4, 4))


# --------------------------------------------------------------------------- PatchLocalization

# Written out here, independently of the class: label -> (row, col) offset in grid cells.
EXPECTED_OFFSETS = {0: (-1, -1), 1: (-1, 0), 2: (-1, 1), 3: (0, -1), 4: (0, 1), 5: (1, -1), 6: (1, 0), 7: (1, 1)}


def top_left(patches: torch.Tensor) -> torch.Tensor:
    """(row, col) of each patch's top-left pixel, read from a coordinate image."""
    return patches[:, :2, 0, 0].round().long()


@pytest.mark.parametrize("label", range(8))
def test_patch_offset_matches_label_row_major(label):
    p, gap = 6, 3
    task = PatchLocalization(p, gap, 0, color=None)
    s = task.sample(coordinate_images(4, 40), labels=label)
    offset = top_left(s.neighbor) - top_left(s.center)
    dr, dc = EXPECTED_OFFSETS[label]
    expected = torch.tensor([dr * (p + gap), dc * (p + gap)])
    assert (offset == expected).all(), f"label {label}: neighbour at (row, col) offset {offset[0].tolist()}, " \
                                       f"expected {expected.tolist()}"
    assert (s.labels == label).all()


def test_patch_rows_and_columns_not_swapped_and_gap_respected():
    p, gap = 5, 4
    task = PatchLocalization(p, gap, 0, color=None)
    x = coordinate_images(3, 30)
    right = task.sample(x, labels=4)  # same row, to the right
    assert (right.neighbor[:, 0] == right.center[:, 0]).all(), "label 4 (right) must stay on the same rows"
    assert (right.neighbor[:, 1, 0, 0] - (right.center[:, 1, 0, p - 1] + 1) == gap).all(), "gap between columns"
    below = task.sample(x, labels=6)  # same columns, below
    assert (below.neighbor[:, 1] == below.center[:, 1]).all(), "label 6 (bottom) must stay on the same columns"
    assert (below.neighbor[:, 0, 0, 0] - (below.center[:, 0, p - 1, 0] + 1) == gap).all(), "gap between rows"


def test_patches_are_contiguous_blocks_of_their_own_image():
    task = PatchLocalization(6, 2, 2, color=None)
    x = coordinate_images(16, 40, 45)
    s = task.sample(x)
    for patches, yx in ((s.center, s.center_yx), (s.neighbor, s.neighbor_yx)):
        assert patches.shape == (16, 3, 6, 6)
        r = torch.arange(6)
        assert torch.equal(patches[:, 0].long(), (yx[:, 0, None, None] + r[:, None]).expand(16, 6, 6))
        assert torch.equal(patches[:, 1].long(), (yx[:, 1, None, None] + r[None, :]).expand(16, 6, 6))
        assert torch.equal(patches[:, 2, 0, 0].long(), torch.arange(16)), "a patch must come from its own image"


def test_patch_jitter_bounded_used_and_patches_inside_image():
    p, gap, j = 4, 2, 2
    task = PatchLocalization(p, gap, j, color=None, generator=torch.Generator().manual_seed(0))
    stride = p + gap
    # an image exactly the grid's size: the grid cannot move, so only jitter moves the patches
    x = coordinate_images(500, task.extent)
    s = task.sample(x)
    home = j + stride  # un-jittered top-left of the centre patch
    center_shift = s.center_yx - home
    neighbor_shift = s.neighbor_yx - (home + torch.tensor([EXPECTED_OFFSETS[int(k)] for k in s.labels]) * stride)
    for shift in (center_shift, neighbor_shift):
        assert shift.abs().max() <= j, "jitter beyond [-jitter, jitter]"
        assert set(shift.flatten().tolist()) == set(range(-j, j + 1)), "every jitter value should occur"
    assert not torch.equal(center_shift, neighbor_shift), "each patch needs its own jitter"
    for yx in (s.center_yx, s.neighbor_yx):
        assert yx.min() >= 0 and yx.max() <= task.extent - p
    assert torch.equal(top_left(s.center), s.center_yx) and torch.equal(top_left(s.neighbor), s.neighbor_yx)


def test_patch_grid_position_and_labels_random_per_image():
    task = PatchLocalization(4, 1, 1, color=None)
    s = task.sample(coordinate_images(200, 48))
    assert s.labels.min() >= 0 and s.labels.max() <= 7 and len(s.labels.unique()) == 8
    assert len(s.center_yx.unique(dim=0)) > 20, "the grid should be placed at a random position per image"
    assert s.center_yx.min() >= 0 and s.center_yx.max() <= 48 - 4
    assert s.neighbor_yx.min() >= 0 and s.neighbor_yx.max() <= 48 - 4


def test_patch_generator_reproducible():
    x = torch.rand(8, 3, 32, 32)
    outs = [PatchLocalization(8, 2, 1, generator=torch.Generator().manual_seed(seed))(x) for seed in (1, 1, 2)]
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
    assert not all(torch.equal(a, b) for a, b in zip(outs[0], outs[2]))


def test_patch_too_small_image_is_a_clear_error():
    task = PatchLocalization(8, 2, 1)  # needs 30 pixels
    task(torch.rand(2, 3, 30, 30))
    with pytest.raises(ValueError, match="too small.*30"):
        task(torch.rand(2, 3, 29, 40))
    with pytest.raises(ValueError):
        PatchLocalization(0, 1, 1)
    with pytest.raises(ValueError):
        PatchLocalization(8, 2, 1, color="purple")


def test_patch_color_drop_keeps_one_channel_and_gray_projects():
    x = torch.rand(32, 3, 32, 32)
    plain = PatchLocalization(8, 2, 1, color=None, generator=torch.Generator().manual_seed(0)).sample(x)
    dropped = PatchLocalization(8, 2, 1, color="drop", generator=torch.Generator().manual_seed(0)).sample(x)
    assert torch.equal(plain.center_yx, dropped.center_yx)  # same draws up to the recolouring
    for a, b in ((plain.center, dropped.center), (plain.neighbor, dropped.neighbor)):
        kept = (a == b).flatten(2).all(2)  # (N, 3): which channels survived
        assert (kept.sum(1) == 1).all(), "colour dropping keeps exactly one channel of each patch"
        assert b[~kept].flatten(1).std(1).max() < 0.01, "dropped channels are faint noise"
    assert len(kept.float().argmax(1).unique()) > 1, "the kept channel is random"
    gray = PatchLocalization(8, 2, 1, color="gray")(x)[0]
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])


def test_patch_keeps_input_dtype_and_fits_fit():
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64)
    before = x.clone()
    (center, neighbor), labels = PatchLocalization().batch_transform(x, torch.zeros(4))
    assert center.dtype == torch.float64 and neighbor.shape == (4, 3, 8, 8) and labels.shape == (4,)
    assert torch.equal(x, before)


# --------------------------------------------------------------------------- SimCLRViews


def test_simclr_views_shapes_range_and_difference():
    x = torch.rand(8, 3, 40, 40)
    before = x.clone()
    v1, v2 = SimCLRViews(32, generator=torch.Generator().manual_seed(0))(x)  # ImageNet defaults, blur on
    assert v1.shape == v2.shape == (8, 3, 32, 32) and v1.dtype == x.dtype
    assert v1.min() >= 0 and v1.max() <= 1 and v2.min() >= 0 and v2.max() <= 1
    assert not torch.allclose(v1, v2), "the two views must be augmented independently"
    assert torch.equal(x, before)


def test_simclr_views_are_random_per_image():
    x = torch.rand(1, 3, 32, 32).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    for views in (SimCLRViews.for_small_images(32), SimCLRViews(32, jitter_p=0, grayscale_p=0, blur_p=0, flip_p=0)):
        v = views.view(x)
        distinct = len(v.flatten(1).unique(dim=0))
        assert distinct == 16, f"{views!r}: identical images gave only {distinct} distinct views: " \
                               "parameters must be drawn per image"


@pytest.mark.parametrize("device", DEVICES)
def test_simclr_views_run_on_the_tensor_device(device):
    x = torch.rand(4, 3, 32, 32, device=device)
    v1, v2 = SimCLRViews(32, rotate_p=0.5, noise_p=0.5)(x)
    assert v1.device == x.device and v2.device == x.device
    g = torch.Generator(device=device).manual_seed(0)
    assert SimCLRViews.for_small_images(32, generator=g).view(x).device == x.device


def test_simclr_generator_reproducible():
    x = torch.rand(4, 3, 32, 32)
    a, b, c = (SimCLRViews(32, generator=torch.Generator().manual_seed(s), rotate_p=0.5, noise_p=0.5)(x)
               for s in (3, 3, 4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def identity(**kw) -> SimCLRViews:
    off = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    return SimCLRViews(32, **{**off, **kw})


def test_simclr_resampling_is_aligned_flip_and_rotation_exact():
    x = torch.rand(6, 3, 32, 32)
    torch.testing.assert_close(identity().view(x), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(identity(flip_p=1.0).view(x), x.flip(3), atol=1e-6, rtol=0)
    rotated = identity(rotate_p=1.0).view(x)
    for i in range(6):
        errors = [(rotated[i] - torch.rot90(x[i], k, dims=(1, 2))).abs().max() for k in (1, 2, 3)]
        assert min(errors) < 1e-6, "rotate gives rot90 by 90, 180 or 270 degrees"


def test_simclr_crop_area_and_aspect_ratio_follow_the_settings():
    # on a linear ramp bilinear resampling is exact, so the views tell the crop box
    n, scale, ratio = 200, (0.2, 0.6), (0.5, 2.0)
    x = coordinate_images(n, 32).float()
    v = SimCLRViews(32, crop_scale=scale, crop_ratio=ratio, flip_p=0, jitter_p=0, grayscale_p=0, blur_p=0,
                    generator=torch.Generator().manual_seed(0)).view(x)
    # samples are at the crop box's pixel centres: first to last spans 31/32 of the box
    height = (v[:, 0, -1, 0] - v[:, 0, 0, 0]) * 32 / 31
    width = (v[:, 1, 0, -1] - v[:, 1, 0, 0]) * 32 / 31
    area = width * height / 32 ** 2
    assert area.min() >= scale[0] - 1e-4 and area.max() <= scale[1] + 1e-4
    assert (width / height).min() >= ratio[0] - 1e-4 and (width / height).max() <= ratio[1] + 1e-4
    top, left = v[:, 0, 0, 0] - 0.5 * height / 32, v[:, 1, 0, 0] - 0.5 * width / 32
    assert top.min() >= -0.5 - 1e-4 and left.min() >= -0.5 - 1e-4, "crop box must lie inside the image"


def test_colour_steps_match_torchvision_in_any_order():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 16, 16, generator=g)
    b, c, s = (0.2 + 1.6 * torch.rand(12, generator=g) for _ in range(3))
    h = torch.rand(12, generator=g) - 0.5
    order = torch.rand(12, 4, generator=g).argsort(1)
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    out = color_jitter(x, b, c, s, h, order)
    for i in range(12):
        ref = x[i]
        for k in order[i].tolist():
            ref = ops[k](ref, (b, c, s, h)[k][i].item())
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    skipped = color_jitter(x, b, c, s, h, torch.full_like(order, -1))
    assert torch.equal(skipped, x)


def test_grayscale_blur_and_noise():
    x = torch.rand(4, 3, 32, 32)
    gray = identity(grayscale_p=1.0).view(x)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x, 3), atol=1e-6, rtol=0)
    assert torch.equal(to_grayscale(x[:, :1]), x[:, :1])
    sigma = torch.tensor([0.5, 1.0, 1.5, 2.0])
    blurred = _gaussian_blur(x, sigma, 5)
    for i in range(4):
        torch.testing.assert_close(blurred[i], TF.gaussian_blur(x[i], [5, 5], [sigma[i].item()] * 2),
                                   atol=1e-5, rtol=0)
    mid = torch.full((64, 3, 32, 32), 0.5)
    noisy = identity(noise_p=1.0, noise_std=0.05).view(mid)
    assert abs((noisy - mid).std().item() - 0.05) < 0.005


def test_small_image_preset_and_validation():
    small = SimCLRViews.for_small_images(32)
    assert small.blur_p == 0 and small.crop_scale == (0.5, 1.0) and small.jitter == (0.4, 0.4, 0.4, 0.1)
    assert small.jitter_p == 0.8 and small.grayscale_p == 0.2
    paper = SimCLRViews(224)
    assert paper.crop_scale == (0.08, 1.0) and paper.jitter == (0.8, 0.8, 0.8, 0.2) and paper.blur_p == 0.5
    assert paper.blur_kernel == 23  # 10% of 224, odd
    with pytest.raises(ValueError):
        SimCLRViews(32, crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError):
        SimCLRViews(32, jitter_p=2)
    with pytest.raises(TypeError, match="floating"):
        small.view(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_simclr_batch_transform_concatenates_views():
    x = torch.rand(5, 3, 32, 32)
    inputs, targets = SimCLRViews.for_small_images(32).batch_transform(x, torch.zeros(5))
    assert inputs.shape == (10, 3, 32, 32) and targets is None


def test_gallery_has_the_lecture_panels():
    x = torch.rand(3, 3, 32, 32)
    panels = gallery_transforms(32, generator=torch.Generator().manual_seed(0))
    assert tuple(panels) == GALLERY_PANELS == ("original", "crop+resize", "crop+resize+flip", "distort", "rotate",
                                               "noise")
    for name, transform in panels.items():
        out = transform(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name
        assert torch.equal(out, x) == (name == "original"), name
    assert math.isclose(float(panels["rotate"](x).sum()), float(x.sum()), rel_tol=1e-5)  # pixels moved, not changed
