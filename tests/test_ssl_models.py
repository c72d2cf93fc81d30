"""Pretext-task models, and each pretext task running through `fit` on a few Digits-M images."""
import math

import pytest
import torch

from course_utils.augment import PatchLocalization, SimCLRViews, rotation_batch_transform
from course_utils.data import load_digits, make_loader
from course_utils.losses import NTXentLoss
from course_utils.models import PatchSiamese, RotationClassifier, SimCLRModel, SmallCNN
from course_utils.train import fit


def small_encoder():
    torch.manual_seed(0)
    net = SmallCNN(width=8, readout=2)
    return net.encoder, net.feature_dim


@pytest.mark.parametrize("side", [8, 9, 10, 32])
def test_small_cnn_encoder_accepts_patches_smaller_than_images(side):
    encoder, dim = small_encoder()
    assert encoder(torch.rand(3, 3, side, side)).shape == (3, dim)


def test_rotation_classifier_shapes_and_shared_encoder():
    encoder, dim = small_encoder()
    model = RotationClassifier(encoder, dim)
    assert model.encoder is encoder
    assert model(torch.rand(4, 3, 32, 32)).shape == (4, 4)
    assert RotationClassifier(encoder, dim, hidden=None)(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_patch_siamese_takes_a_pair_and_knows_which_is_which():
    encoder, dim = small_encoder()
    model = PatchSiamese(encoder, dim).eval()
    center, neighbor = torch.rand(5, 3, 8, 8), torch.rand(5, 3, 8, 8)
    logits = model((center, neighbor))
    assert logits.shape == (5, 8)
    # late fusion keeps the order: swapping the patches must be able to change the answer
    assert not torch.allclose(logits, model((neighbor, center)))
    assert model.encoder is encoder and sum(p.numel() for p in model.parameters()) == \
        sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in model.head.parameters())


def test_simclr_model_projects_and_keeps_the_representation_before_the_head():
    encoder, dim = small_encoder()
    model = SimCLRModel(encoder, dim, projection_dim=16, hidden=32).eval()
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 16)
    assert model.encoder(x).shape == (3, dim), "the probe's representation is the encoder output (before the head)"
    assert not any(p is q for p in model.projection_head.parameters() for q in encoder.parameters())


@pytest.fixture(scope="module")
def digits_m_loader():
    data = load_digits("train", background="photos").subset(32)
    return make_loader(data, batch_size=16, shuffle=True, device="cpu")


def pretext_setups():
    encoder, dim = small_encoder()
    yield "rotation", RotationClassifier(encoder, dim), dict(batch_transform=rotation_batch_transform)
    encoder, dim = small_encoder()
    patches = PatchLocalization(8, 2, 1, generator=torch.Generator().manual_seed(0))
    yield "patches", PatchSiamese(encoder, dim), dict(batch_transform=patches.batch_transform)
    encoder, dim = small_encoder()
    views = SimCLRViews.for_small_images(32, generator=torch.Generator().manual_seed(0))
    yield "simclr", SimCLRModel(encoder, dim, projection_dim=16, hidden=32), dict(
        batch_transform=views.batch_transform, loss_fn=NTXentLoss(0.5))


@pytest.mark.parametrize("setup", list(pretext_setups()), ids=lambda s: s[0])
def test_each_pretext_task_trains_through_fit(setup, digits_m_loader):
    name, model, kwargs = setup
    before = [p.detach().clone() for p in model.encoder.parameters()]
    history = fit(model, digits_m_loader, epochs=1, max_steps=2, device="cpu", progress=False, **kwargs)
    assert len(history.step_loss) == 2 and all(math.isfinite(v) for v in history.step_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters())), \
        f"{name}: the encoder was not trained"
    if name == "simclr":
        assert math.isnan(history.train_accuracy[0])  # no classes to be accurate about
    else:
        assert 0 <= history.train_accuracy[0] <= 1
