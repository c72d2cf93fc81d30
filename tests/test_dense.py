"""Colorization and inpainting pretext tasks (notebook 07)."""
import math

import pytest
import torch

from course_utils.augment import to_grayscale
from course_utils.data import load_digits, make_loader
from course_utils.dense import (EncoderDecoder, Inpainting, ToGrayscale, colorization_batch, colorization_loss,
                                square_holes)
from course_utils.train import fit


def test_encoder_decoder_shapes_and_shared_trunk():
    torch.manual_seed(0)
    model = EncoderDecoder(out_channels=3, width=8)
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    assert model.encoder(x).shape == (2, model.feature_dim) == (2, 64)
    assert model.encoder[0] is model.trunk


def test_colorization_batch_hides_the_colours():
    x = torch.rand(3, 3, 8, 8)
    inputs, targets = colorization_batch(x, None)
    assert torch.equal(targets, x) and torch.allclose(inputs, to_grayscale(x))
    assert torch.allclose(inputs[:, 0], inputs[:, 1])
    assert torch.allclose(ToGrayscale()(x), to_grayscale(x))
    assert colorization_loss(x, x) == 0


def test_square_holes_are_one_square_each_inside_the_image():
    g = torch.Generator().manual_seed(0)
    mask = square_holes(50, 20, 24, 6, generator=g)
    assert mask.shape == (50, 1, 20, 24) and mask.dtype == torch.bool
    assert (mask.flatten(1).sum(1) == 36).all()
    rows, cols = mask[:, 0].any(2), mask[:, 0].any(1)
    assert (rows.sum(1) == 6).all() and (cols.sum(1) == 6).all()
    assert rows[:, 0].any() and rows[:, -1].any(), "holes reach every position, borders included"
    with pytest.raises(ValueError):
        square_holes(1, 4, 4, 5)


def test_inpainting_cuts_the_hole_and_scores_mostly_the_hole():
    task = Inpainting(hole=4, generator=torch.Generator().manual_seed(1))
    x = torch.rand(5, 3, 12, 12)
    holed, (target, mask) = task.batch_transform(x, None)
    assert torch.equal(target, x)
    assert torch.all(holed[mask.expand_as(x)] == 0.5) and torch.equal(holed[~mask.expand_as(x)], x[~mask.expand_as(x)])
    perfect_hole = torch.where(mask, x, torch.zeros_like(x))
    assert task.loss(x, (x, mask)) == 0
    outside_only = float(task.loss(perfect_hole, (x, mask)))
    inside_only = float(task.loss(torch.where(mask, torch.zeros_like(x), x), (x, mask)))
    assert math.isclose(inside_only / outside_only,
                        0.999 / 0.001 * float((x[mask.expand_as(x)] ** 2).mean() / (x[~mask.expand_as(x)] ** 2).mean()),
                        rel_tol=1e-3)


@pytest.mark.parametrize("task", ["colorization", "inpainting"])
def test_dense_tasks_train_through_fit(task):
    data = load_digits("train", background="photos").subset(32)
    loader = make_loader(data, 16, shuffle=True)
    torch.manual_seed(0)
    model = EncoderDecoder(width=8)
    if task == "colorization":
        kwargs = dict(batch_transform=colorization_batch, loss_fn=colorization_loss)
    else:
        inpainting = Inpainting(hole=8, generator=torch.Generator().manual_seed(0))
        kwargs = dict(batch_transform=inpainting.batch_transform, loss_fn=inpainting.loss)
    history = fit(model, loader, epochs=1, max_steps=2, device="cpu", progress=False, **kwargs)
    assert len(history.step_loss) == 2 and all(math.isfinite(v) for v in history.step_loss)
    assert math.isnan(history.train_accuracy[0])
