"""Few-label evaluation: label draws, probes over draws, the supervised baseline, checkpoints."""
import math

import pytest
import torch

from course_utils.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.probe import FewLabelResult, few_label_probe, few_label_supervised, label_draws, probe_accuracy
from course_utils.train import linear_probe


@pytest.fixture(scope="module")
def digits():
    return load_digits("train").subset(300), load_digits("test").subset(100)


def small_encoder(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(width=8, readout=2).encoder


def test_few_label_result_summary():
    r = FewLabelResult([0.5, 0.6, 0.7])
    assert math.isclose(r.mean, 0.6) and math.isclose(r.std, 0.1)
    assert str(r) == "60.0 ± 10.0%"
    assert FewLabelResult([0.4]).std == 0.0
    pooled = FewLabelResult.pool([FewLabelResult([0.1]), FewLabelResult([0.2, 0.3])])
    assert pooled.accuracies == [0.1, 0.2, 0.3]


def test_label_draws_are_balanced_different_and_reproducible(digits):
    train, _ = digits
    draws = label_draws(train, per_class=3, draws=3, seed=5)
    assert all(len(d) == 30 and torch.bincount(d.labels, minlength=10).tolist() == [3] * 10 for d in draws)
    assert not torch.equal(draws[0].images, draws[1].images)
    again = label_draws(train, per_class=3, draws=3, seed=5)
    assert all(torch.equal(a.images, b.images) for a, b in zip(draws, again))
    with pytest.raises(ValueError):
        label_draws(train, per_class=0)


def test_few_label_probe_is_linear_probe_per_draw_and_leaves_the_encoder_alone(digits):
    train, test = digits
    encoder = small_encoder().train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    draws = label_draws(train, per_class=5, draws=2)
    result = few_label_probe(encoder, draws, test, device="cpu")
    assert len(result.accuracies) == 2 and all(0.3 < a <= 1 for a in result.accuracies)  # chance is 0.1
    expected = linear_probe(encoder, make_loader(draws[0], 64), make_loader(test, 64), device="cpu")
    assert math.isclose(result.accuracies[0], expected, abs_tol=1e-9)
    assert encoder.training and all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())


def test_probe_accuracy_on_separable_features():
    x = torch.cat([torch.randn(20, 2) + 5, torch.randn(20, 2) - 5])
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    assert probe_accuracy(x, y, x, y) == 1.0


def test_few_label_supervised_trains_one_model_per_draw(digits):
    train, test = digits
    draws = label_draws(train, per_class=5, draws=2)
    result, models = few_label_supervised(lambda: SmallCNN(width=8), draws, test, steps=3, device="cpu",
                                          progress=False)
    assert len(result.accuracies) == 2 and len(models) == 2 and models[0] is not models[1]
    again, _ = few_label_supervised(lambda: SmallCNN(width=8), draws, test, steps=3, device="cpu", progress=False)
    assert again.accuracies == result.accuracies, "seeded: the same numbers on every run"


def test_checkpoint_round_trip_keyed_by_profile_seed_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    encoder, other = small_encoder(0), small_encoder(1)
    config = {"steps": 10, "batch_size": 64}
    assert load_checkpoint(other, "enc", profile="quick", seed=0, config=config) is None
    path = save_checkpoint(encoder, "enc", profile="quick", seed=0, config=config, extra={"accuracy": 0.5})
    assert path == checkpoint_path("enc", profile="quick", seed=0) and path.parent == tmp_path / "checkpoints"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left behind"
    assert load_checkpoint(other, "enc", profile="grade", seed=0, config=config) is None
    assert load_checkpoint(other, "enc", profile="quick", seed=1, config=config) is None
    assert load_checkpoint(other, "enc", profile="quick", seed=0, config={"steps": 11, "batch_size": 64},
                           verbose=False) is None
    assert not torch.equal(other[0][0][0].weight, encoder[0][0][0].weight), "a stale checkpoint is not loaded"
    assert load_checkpoint(other, "enc", profile="quick", seed=0, config=dict(reversed(config.items()))) == \
        {"accuracy": 0.5}
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in encoder.state_dict().items())


def test_a_broken_checkpoint_is_reported_and_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    path = checkpoint_path("enc", profile="quick", seed=0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    assert load_checkpoint(small_encoder(), "enc", profile="quick", seed=0) is None
    assert "cannot be used" in capsys.readouterr().out
    with pytest.raises(ValueError):
        checkpoint_path("a/b", profile="quick", seed=0)
