import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.runtime import seed_everything
from course_utils.train import History, evaluate, extract_features, fit, linear_probe

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def digits():
    return load_digits("train").subset(200), load_digits("test").subset(100)


def test_fit_learns_and_records_history(digits):
    train, test = digits
    seed_everything(0)
    model = SmallCNN()
    before = evaluate(model, make_loader(test, 100))
    history = fit(model, make_loader(train, 32, shuffle=True), epochs=3, lr=3e-3, val_loader=make_loader(test, 100),
                  progress=False)
    after = evaluate(model, make_loader(test, 100))
    assert after["accuracy"] > max(0.6, before["accuracy"] + 0.3)
    assert history.epoch == [1, 2, 3]
    assert history.train_loss[-1] < history.train_loss[0]
    assert len(history.step_loss) == 3 * 7 and len(history.val_accuracy) == 3
    assert all(0 <= a <= 1 for a in history.train_accuracy)
    assert not model.training


def test_fit_is_reproducible(digits):
    train, _ = digits
    losses = []
    for _ in range(2):
        seed_everything(1)
        h = fit(SmallCNN(), make_loader(train, 50, shuffle=True, seed=1), epochs=1, progress=False)
        losses.append(h.step_loss)
    assert losses[0] == losses[1]


def test_max_steps_caps_training(digits):
    train, _ = digits
    history = fit(SmallCNN(), make_loader(train, 32), epochs=5, max_steps=2, progress=False)
    assert len(history.step_loss) == 2 and history.epoch == [1]


def test_batch_transform_and_custom_loss_run_on_the_device(digits):
    train, _ = digits
    seen = []

    def transform(x, y):
        seen.append(x.shape[0])
        return torch.cat([x, x.flip(3)]), torch.cat([y, y])

    def loss_fn(outputs, targets):
        return F.cross_entropy(outputs, targets, label_smoothing=0.1)

    history = fit(SmallCNN(), make_loader(train, 40), epochs=1, batch_transform=transform, loss_fn=loss_fn,
                  progress=False, schedule=None)
    assert seen[0] == 40 and len(seen) == 5
    assert not math.isnan(history.train_accuracy[0])


def test_non_classification_outputs_give_nan_accuracy(digits):
    train, _ = digits
    model = SmallCNN()

    def embed_loss(outputs, targets):
        return outputs.pow(2).mean()

    history = fit(model, make_loader(train, 50), epochs=1, loss_fn=embed_loss, batch_transform=lambda x, y: (x, None),
                  progress=False)
    assert math.isnan(history.train_accuracy[0])


def test_fit_rejects_nothing_to_do(digits):
    with pytest.raises(ValueError, match="nothing to train"):
        fit(SmallCNN(), make_loader(digits[0], 32), epochs=0, progress=False)


def test_evaluate_restores_mode_and_needs_data(digits):
    model = SmallCNN().train()
    result = evaluate(model, make_loader(digits[1], 64))
    assert model.training and result["n"] == 100
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])


def test_extract_features_is_frozen(digits):
    model = SmallCNN().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    features, labels = extract_features(model.encoder, make_loader(digits[1], 64))
    assert features.shape == (100, model.feature_dim) and labels.shape == (100,)
    assert not features.requires_grad
    # BatchNorm running statistics untouched, mode restored
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_linear_probe_beats_chance_and_leaves_the_encoder_alone(digits):
    train, test = digits
    seed_everything(0)
    model = SmallCNN()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    acc = linear_probe(model.encoder, make_loader(train, 100), make_loader(test, 100))
    assert 0.3 < acc <= 1.0  # random conv features of digits are far above the 10% of chance
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_history_plot(digits):
    history = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_accuracy=[0.5, 0.8], seconds=[1, 1])
    fig = history.plot()
    assert len(fig.axes) == 2
    assert history.total_seconds == 2
