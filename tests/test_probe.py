"""Few-label evaluation: label draws, probes over draws, the supervised baseline, checkpoints."""
import math

import pytest
import torch

from course_utils.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from course_utils.data import load_digits, make_loader
from course_utils.models import SmallCNN
from course_utils.probe import (CurveDraws, FewLabelResult, LabelCurve, dataset_features, few_label_probe,
                                 few_label_supervised, fit_probe, label_draw_indices, label_draws, probe_accuracy,
                                 probe_curve, supervised_curve)
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


def test_few_label_results_pair_run_by_run():
    a, b = FewLabelResult([0.5, 0.6, 0.7]), FewLabelResult([0.4, 0.65, 0.5])
    assert a.minus(b).accuracies == pytest.approx([0.1, -0.05, 0.2])
    with pytest.raises(ValueError, match="paired"):
        a.minus(FewLabelResult([0.5]))


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


def test_label_draw_indices_pick_the_images_of_label_draws_and_nest_across_sizes(digits):
    train, _ = digits
    for per_class in (1, 4):
        indices = label_draw_indices(train, per_class, draws=3, seed=7)
        for i, labelled in zip(indices, label_draws(train, per_class, draws=3, seed=7)):
            assert torch.equal(train.images[i], labelled.images) and torch.equal(train.labels[i], labelled.labels)
    few, more = label_draw_indices(train, 2, draws=1)[0], label_draw_indices(train, 5, draws=1)[0]
    assert set(few.tolist()) < set(more.tolist()), "one seed: the draw at fewer labels is inside the one at more"
    with pytest.raises(ValueError):
        label_draw_indices(train, 1, draws=0)


def test_curve_draws_hold_every_draw_once_as_indices_into_their_union(digits):
    train, _ = digits
    draws = CurveDraws.draw(train, [5, 1, 2, 5], draws=2, seed=3)
    assert draws.per_class == [1, 2, 5] and draws.draws == 2
    assert len(draws.images) < len(train), "only images some draw uses"
    used = torch.cat([i for sets in draws.indices.values() for i in sets]).unique()
    assert torch.equal(used, torch.arange(len(draws.images))), "every image of the union is used"
    for k in draws.per_class:
        for d, labelled in enumerate(label_draws(train, k, draws=2, seed=3)):
            mine = draws.labelled(k, d)
            assert torch.equal(mine.images, labelled.images) and torch.equal(mine.labels, labelled.labels)
    with pytest.raises(ValueError):
        CurveDraws.draw(train, [])


def test_label_curve_paired_differences_average_and_crossing():
    a = LabelCurve([1, 10], [FewLabelResult([0.3, 0.5]), FewLabelResult([0.7, 0.9])])
    b = LabelCurve([1, 10], [FewLabelResult([0.2, 0.3]), FewLabelResult([0.6, 0.9])])
    assert a.means == pytest.approx([0.4, 0.8]) and a.stds == pytest.approx([math.sqrt(0.02)] * 2)
    assert a.at(10).accuracies == [0.7, 0.9]
    gain = a.minus(b)
    assert gain.at(1).accuracies == pytest.approx([0.1, 0.2]) and gain.at(10).accuracies == pytest.approx([0.1, 0.0])
    assert gain.at(1).std < a.at(1).std, "pairing by draw removes what the draw does to both"
    mean = LabelCurve.average([a, b])
    assert mean.at(1).accuracies == pytest.approx([0.25, 0.4]) and mean.at(10).accuracies == pytest.approx([0.65, 0.9])
    assert a.overtakes(b) == 1 and b.overtakes(a) is None
    assert a.select([10]).per_class == [10] and a.select([10]).at(10) is a.at(10)
    c = LabelCurve([1, 2, 5], [FewLabelResult([0.5]), FewLabelResult([0.1]), FewLabelResult([0.9])])
    d = LabelCurve([1, 2, 5], [FewLabelResult([0.2]), FewLabelResult([0.2]), FewLabelResult([0.2])])
    assert c.overtakes(d) == 5, "ahead at 1, behind at 2: it overtakes for good only at 5"
    with pytest.raises(ValueError):
        a.minus(LabelCurve([1, 5], a.results))
    with pytest.raises(ValueError):
        a.minus(LabelCurve([1, 10], [FewLabelResult([0.1]), FewLabelResult([0.2])]))
    with pytest.raises(ValueError):
        LabelCurve([1, 2], [FewLabelResult([0.1])])


def test_fit_probe_predicts_what_probe_accuracy_scores(digits):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)
    predict = fit_probe(x[:40], y[:40])
    assert predict(x[40:]).shape == (20,)
    assert (predict(x[40:]) == y[40:]).double().mean().item() == pytest.approx(probe_accuracy(x[:40], y[:40], x[40:], y[40:]))


def test_probe_curve_agrees_with_few_label_probe_at_every_point(digits):
    train, test = digits
    encoder = small_encoder()
    draws = CurveDraws.draw(train, [1, 3], draws=2, seed=0)
    train_f, test_f = dataset_features(encoder, draws.images, device="cpu"), dataset_features(encoder, test, device="cpu")
    curve = probe_curve(train_f, test_f, draws)
    assert curve.per_class == [1, 3]
    for k in (1, 3):
        expected = few_label_probe(encoder, label_draws(train, k, draws=2, seed=0), test, device="cpu")
        assert curve.at(k).accuracies == pytest.approx(expected.accuracies, abs=1e-9)
    with pytest.raises(ValueError):
        probe_curve(test_f, test_f, draws)


def test_supervised_curve_trains_each_unknown_point_as_few_label_supervised_does(digits):
    train, test = digits
    draws = CurveDraws.draw(train, [1, 2], draws=2, seed=0)
    make = lambda: SmallCNN(width=8)  # noqa: E731
    known = FewLabelResult([0.5, 0.6])
    curve, models = supervised_curve(make, draws, test, steps=2, device="cpu", known={2: known}, progress=False)
    assert curve.per_class == [1, 2] and curve.at(2) is known and list(models) == [1] and len(models[1]) == 2
    expected, _ = few_label_supervised(make, label_draws(train, 1, draws=2), test, steps=2, device="cpu",
                                       progress=False)
    assert curve.at(1).accuracies == expected.accuracies
    only, trained = supervised_curve(make, draws, test, steps=2, device="cpu", per_class=[2], known={2: known},
                                     progress=False)
    assert only.per_class == [2] and trained == {}
    with pytest.raises(ValueError):
        supervised_curve(make, draws, test, steps=2, per_class=[3], progress=False)


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
