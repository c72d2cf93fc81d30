"""Pretext recipes: one set of settings per task and profile, shared by notebooks 04, 05 and 06."""
import pytest
import torch

from course_utils.data import load_digits
from course_utils.probe import label_draws
from course_utils.profiles import get_profile
from course_utils.pretext import (TASKS, build_classifier, build_encoder, few_label_setup, load_or_train_encoder,
                                  load_or_train_supervised, pretext_recipe, save_pretrained_encoder, train_pretext)


@pytest.fixture(scope="module")
def tiny():
    return load_digits("train", background="photos").subset(48), load_digits("test", background="photos").subset(40)


def test_small_cnn_encoder_reads_out_2x2():
    encoder, dim = build_encoder("small_cnn")
    assert dim == 256 and encoder(torch.rand(2, 3, 32, 32)).shape == (2, 256)
    assert build_classifier("small_cnn")(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    tiny, tiny_dim = build_encoder("tiny_cnn")  # the grade profile's: the same network, a quarter as wide
    assert tiny_dim == 64 and tiny(torch.rand(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError):
        build_encoder("vgg")


@pytest.mark.parametrize("profile", ["quick", "full", "grade"])
def test_every_task_has_a_recipe_on_every_profile(profile):
    p = get_profile(profile, device="cpu")
    for task in TASKS:
        r = pretext_recipe(task, p)
        assert r.steps >= 1 and r.batch_size >= 1 and r.lr > 0
        assert r.encoder == {"quick": "small_cnn", "grade": "tiny_cnn", "full": "resnet18"}[profile]
    assert pretext_recipe("rotation", get_profile("grade")).steps == get_profile("grade").max_steps
    assert few_label_setup(p).per_class >= 1
    with pytest.raises(ValueError):
        pretext_recipe("jigsaw", p)


@pytest.mark.parametrize("task", TASKS)
def test_train_pretext_trains_the_encoder(task, tiny):
    train, _ = tiny
    recipe = pretext_recipe(task, get_profile("grade"))
    encoder, dim = build_encoder(recipe.encoder)
    before = [p.detach().clone() for p in encoder.parameters()]
    model, history = train_pretext(recipe, encoder, dim, train, device="cpu", progress=False)
    assert model.encoder is encoder and len(history.step_loss) == recipe.steps
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))


def test_load_or_train_reuses_what_a_notebook_saved(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    train, test = tiny
    profile = get_profile("grade")
    first, info = load_or_train_encoder("rotation", profile, train, seed=3, progress=False)
    assert info["source"] == "trained"
    second, info = load_or_train_encoder("rotation", profile, train, seed=3, progress=False)
    assert info["source"] == "checkpoint"
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    encoder, _ = build_encoder(pretext_recipe("simclr", profile).encoder)  # the grade profile's (tiny_cnn)
    save_pretrained_encoder("simclr", encoder, profile, seed=3, extra={"note": 1})
    loaded, info = load_or_train_encoder("simclr", profile, train, seed=3)
    assert info == {"note": 1, "source": "checkpoint"}
    _, info = load_or_train_encoder("simclr", profile, train, seed=3, use_checkpoints=False, progress=False)
    assert info["source"] == "trained"


def test_supervised_baseline_is_saved_and_reloaded(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    train, test = tiny
    profile = get_profile("grade")
    draws = label_draws(train, per_class=2, draws=2)
    trained, models, info = load_or_train_supervised(profile, draws, test, progress=False)
    assert info["source"] == "trained" and len(models) == 2
    loaded, _, info = load_or_train_supervised(profile, draws, test, progress=False)
    assert info["source"] == "checkpoint" and loaded.accuracies == trained.accuracies
    _, _, info = load_or_train_supervised(profile, draws, test, retrain=True, progress=False)
    assert info["source"] == "trained"


def test_full_profile_encoder_takes_patches_and_images():
    """The full profile's ResNet-18 (CIFAR stem) pools to 512 features from 8-pixel patches and 32-pixel images."""
    encoder, dim = build_encoder("resnet18")
    encoder.eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, 8, 8)).shape == (2, dim) == (2, 512)
        assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert build_classifier("resnet18")(torch.rand(2, 3, 32, 32)).shape == (2, 10)
