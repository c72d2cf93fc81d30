"""Colourization by pointing (Vondrick et al. 2018) on synthetic videos whose correspondences are known."""
import pytest
import torch

from course_utils.augment import to_grayscale
from course_utils.data import digits_m_backgrounds, load_digits
from course_utils.video import (colocated_attention, luma_patches, mask_iou, moving_digit_video, pointer_colorize,
                                propagate, tracking_accuracy, video_bank)


@pytest.fixture(scope="module")
def parts():
    digits = load_digits("test").images[:6, :1]
    backgrounds = digits_m_backgrounds(6, "test", size=32, seed=1)
    return digits, backgrounds, 1 - digits_m_backgrounds(6, "test", size=12, seed=2)


def _perfect_attention(source):
    """The pointer that knows the truth: each visible pixel points at its source, the others at pixel 0."""
    n, _, h, w = source.shape
    index = (source[:, 0] * w + source[:, 1]).clamp(min=0).flatten(1)
    return torch.nn.functional.one_hot(index, h * w).float()


def test_video_moves_digit_and_camera_and_knows_every_source(parts):
    digits, backgrounds, textures = parts
    video = moving_digit_video(digits[0], backgrounds[0], textures[0], frames=4, digit_step=(2, 2), camera_step=(1, -1))
    assert video.frames.shape == (4, 3, 24, 24) and video.masks.shape == (4, 1, 24, 24)
    assert video.source.shape == (4, 2, 24, 24) and 0 <= video.frames.min() and video.frames.max() <= 1
    assert torch.equal(video.masks[3, :, 6:, 6:], video.masks[0, :, :-6, :-6]), "the digit moves 2 pixels a frame"
    rows, cols = torch.meshgrid(torch.arange(24), torch.arange(24), indexing="ij")
    assert torch.equal(video.source[0], torch.stack([rows, cols])), "frame 0 is its own source"
    for t in range(1, 4):  # every visible point keeps its colour: the correspondences are exact
        visible = (video.source[t] >= 0).all(0)
        r, c = video.source[t, 0][visible], video.source[t, 1][visible]
        assert torch.equal(video.frames[t][:, visible], video.frames[0][:, r, c])
        assert 0.5 < visible.float().mean() < 1, "some points come in at the border or from behind the digit"
    with pytest.raises(ValueError, match="leaves"):
        moving_digit_video(digits[0], backgrounds[0], textures[0], frames=8, digit_step=(2, 2))


def test_video_bank_is_reproducible(parts):
    a = video_bank(*parts, generator=torch.Generator().manual_seed(0))
    b = video_bank(*parts, generator=torch.Generator().manual_seed(0))
    assert len(a) == 6 and all(torch.equal(x.frames, y.frames) for x, y in zip(a, b))
    assert len({tuple(v.source[1, :, 12, 12].tolist()) for v in a}) > 1, "the directions vary"


def test_pointer_copies_colours_and_its_attention_is_a_distribution():
    torch.manual_seed(0)
    reference = torch.rand(2, 3, 5, 5)
    features = torch.nn.functional.one_hot(torch.arange(25), 25).float().T.reshape(1, 25, 5, 5).expand(2, -1, -1, -1)
    perm = torch.randperm(25)
    target_features = features.flatten(2)[:, :, perm].reshape(2, 25, 5, 5)  # target pixel i is reference pixel perm[i]
    colors, attention = pointer_colorize(reference, features, target_features, temperature=0.01)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 25))
    assert torch.allclose(colors.flatten(2), reference.flatten(2)[:, :, perm], atol=1e-4)
    same, _ = pointer_colorize(reference, features, features, temperature=0.01, metric="distance")
    assert torch.allclose(same, reference, atol=1e-4)
    assert torch.equal(propagate(reference, colocated_attention(2, 5, 5)), reference)
    with pytest.raises(ValueError, match="metric"):
        pointer_colorize(reference, features, features, metric="cosine")


def test_tracking_accuracy_and_mask_iou_closed_forms(parts):
    video = moving_digit_video(*(p[0] for p in parts))
    source = video.source[3:]
    assert tracking_accuracy(_perfect_attention(source), source) == 1.0
    assert tracking_accuracy(colocated_attention(1, 24, 24), source) == 0.0  # everything moved 3 pixels or more
    assert tracking_accuracy(colocated_attention(1, 24, 24), source, tolerance=6) == 1.0
    truth = torch.zeros(1, 1, 4, 4)
    truth[..., :2, :] = 1
    guess = torch.zeros(1, 1, 4, 4)
    guess[..., :, :2] = 0.9
    assert mask_iou(truth, truth) == 1.0 and mask_iou(guess, truth) == pytest.approx(4 / 12)


def test_raw_pixel_pointer_beats_copying_the_same_place(parts):
    videos = video_bank(*parts, generator=torch.Generator().manual_seed(0))
    reference = torch.stack([v.frames[0] for v in videos])
    target = torch.stack([v.frames[3] for v in videos])
    colors, attention = pointer_colorize(reference, luma_patches(to_grayscale(reference)),
                                         luma_patches(to_grayscale(target)), temperature=0.01, metric="distance")
    pointer_error = ((colors - target) ** 2).mean()
    colocated_error = ((reference - target) ** 2).mean()
    assert pointer_error < colocated_error / 5
    masks0, masks3 = torch.stack([v.masks[0] for v in videos]), torch.stack([v.masks[3] for v in videos])
    assert mask_iou(propagate(masks0, attention), masks3) > 0.5 > mask_iou(masks0, masks3)
    assert tracking_accuracy(attention, torch.stack([v.source[3] for v in videos])) > 0.4
    assert luma_patches(to_grayscale(reference)).shape == (6, 9, 24, 24)
