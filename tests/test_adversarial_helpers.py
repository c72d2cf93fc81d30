"""Helpers of notebooks 02 and 03: train-or-load checkpoints and the adversarial-example figures."""
import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_utils.checkpoints import checkpoint_path, train_or_load, training_config  # noqa: E402
from course_utils.profiles import get_profile  # noqa: E402
from course_utils.train import History  # noqa: E402
from course_utils.viz import plot_accuracy_bars, plot_accuracy_vs_eps, show_adversarial_example  # noqa: E402


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


def fake_training(calls):
    def train(model):
        calls.append(model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model.train()
        return History(epoch=[1], train_loss=[0.5], train_accuracy=[0.9], seconds=[1.0])
    return train


def test_train_or_load_trains_once_then_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    profile = get_profile("quick", device="cpu")
    config = training_config(profile, model="tiny")
    calls = []
    first = tiny(0)
    history, loaded = train_or_load(first, "standard", fake_training(calls), profile=profile, seed=0, config=config)
    assert not loaded and len(calls) == 1 and not first.training
    assert checkpoint_path("standard", profile=profile, seed=0).is_file()
    second = tiny(1)
    history2, loaded2 = train_or_load(second, "standard", fake_training(calls), profile=profile, seed=0, config=config)
    assert loaded2 and len(calls) == 1, "the second call loads instead of training"
    assert not second.training, "a loaded model ends in eval mode too, as a trained one does"
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert history2.train_loss == history.train_loss == [0.5] and isinstance(history2, History)


def test_train_or_load_retrains_for_other_settings_and_saves_nothing_when_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    profile = get_profile("quick", device="cpu")
    calls = []
    train_or_load(tiny(), "standard", fake_training(calls), profile=profile, config=training_config(profile, model="a"))
    _, loaded = train_or_load(tiny(), "standard", fake_training(calls), profile=profile,
                              config=training_config(profile, model="b"))
    assert not loaded and len(calls) == 2, "a checkpoint of other settings is not loaded"
    _, loaded = train_or_load(tiny(), "other", fake_training(calls), profile=profile, config={}, enabled=False)
    assert not loaded and len(calls) == 3
    assert not checkpoint_path("other", profile=profile).exists()


def test_training_config_holds_the_profile_sizes_and_the_recipe():
    config = training_config(get_profile("grade", device="cpu"), model="small_cnn", eps=0.1)
    assert config["dataset"] == "digits" and config["max_steps"] == 2 and config["model"] == "small_cnn"
    assert config["eps"] == 0.1


def test_show_adversarial_example_titles_predictions_and_confidence():
    x = torch.rand(3, 8, 8)
    x_adv = (x + 0.1 * torch.randn(3, 8, 8).sign()).clamp(0, 1)
    clean, adv = torch.tensor([0.9, 0.1]), torch.tensor([0.02, 0.98])
    fig = show_adversarial_example(x, x_adv, clean, adv, ["cat", "dog"], label=0, eps=0.1)
    titles = [ax.get_title() for ax in fig.axes]
    assert "cat (90.0%)" in titles[0] and "label cat" in titles[0]
    assert "eps = 0.1" in titles[1] and "dog (98.0%)" in titles[2]
    matplotlib.pyplot.close(fig)


def test_accuracy_plots_draw_one_line_or_bar_group_per_entry():
    ax = plot_accuracy_vs_eps({"FGSM": {0: 1.0, 0.1: 0.2}, "PGD": {0.1: 0.0, 0: 1.0}}, chance=0.1)
    assert len(ax.get_lines()) == 3 and list(ax.get_lines()[0].get_xdata()) == [0, 0.1]
    matplotlib.pyplot.close(ax.figure)
    ax = plot_accuracy_bars({"standard": {"clean": 0.99, "PGD": 0.0}, "adversarial": {"clean": 0.97, "PGD": 0.7}})
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == ["standard", "adversarial"]
    matplotlib.pyplot.close(ax.figure)
