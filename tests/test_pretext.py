"""Pretext recipes: one set of settings per task and profile, shared by notebooks 04, 05 and 06."""
import pytest
import torch

from course_utils.data import load_digits
from course_utils.probe import label_draws
from course_utils.profiles import get_profile
from course_utils.pretext import (TASKS, VARIANTS, build_classifier, build_encoder, few_label_finetune, few_label_setup,
                                  image_passes, load_or_train_encoder, load_or_train_supervised, passes_per_image,
                                  pretext_recipe, pretext_transform, save_pretrained_encoder, train_pretext)


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
    with pytest.raises(ValueError, match="unknown variant"):
        pretext_recipe("rotation", p, variant="no-gap")


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_task_gets_the_same_compute(profile):
    """The tasks are compared at an equal budget: the same number of whole-image passes."""
    p = get_profile(profile, device="cpu")
    passes = {task: image_passes(pretext_recipe(task, p)) for task in TASKS}
    assert len(set(passes.values())) == 1, passes
    for task, variants in VARIANTS.items():  # an ablation changes the task's options, never its budget
        for variant in variants:
            assert image_passes(pretext_recipe(task, p, variant)) == passes[task]
    assert passes_per_image("rotation") == 4 and passes_per_image("simclr") == 2
    assert passes_per_image("patch_localization", {"patch_size": 8}) == 2 * (8 / 32) ** 2


def test_variants_change_what_the_task_sees(tiny):
    p = get_profile("quick", device="cpu")
    no_gap = pretext_recipe("patch_localization", p, variant="no-gap")
    assert no_gap.options["gap"] == 0 and no_gap.options["jitter"] == 0 and no_gap.variant == "no-gap"
    assert pretext_recipe("patch_localization", p).options["gap"] > 0
    assert no_gap.config() != pretext_recipe("patch_localization", p).config()
    images = tiny[0].images[:16]
    torch.manual_seed(0)
    crop_only, _ = pretext_transform(pretext_recipe("simclr", p, variant="crop-only"))(images, None)
    torch.manual_seed(0)
    lab, _ = pretext_transform(pretext_recipe("simclr", p))(images, None)
    # the lab's views turn a fifth of them grey; crop only never does (no grayscale, no colour jitter)
    grey = lambda x: int(((x.amax(1) - x.amin(1)).flatten(1).amax(1) < 1e-6).sum())  # noqa: E731
    assert crop_only.shape == lab.shape == (32, 3, 32, 32)
    assert grey(crop_only) == 0 < grey(lab)
    assert pretext_recipe("simclr", p, variant="no-flip").options["views"] == {"flip_p": 0.0}


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
    # an ablation has its own checkpoint: it neither loads nor overwrites the lab's recipe
    _, info = load_or_train_encoder("simclr", profile, train, seed=3, variant="crop-only", progress=False)
    assert info["source"] == "trained"
    _, info = load_or_train_encoder("simclr", profile, train, seed=3)
    assert info == {"note": 1, "source": "checkpoint"}
    _, info = load_or_train_encoder("simclr", profile, train, seed=3, variant="crop-only", progress=False)
    assert info["source"] == "checkpoint"


def test_fine_tuning_starts_from_the_encoder_and_pairs_with_the_baseline(tiny):
    """Fine-tuning is the from-scratch recipe with the pretrained encoder as the start: with a random
    encoder of the same seed it *is* the from-scratch run; with another encoder it differs."""
    from course_utils.probe import few_label_supervised
    from course_utils.runtime import seed_everything

    train, test = tiny
    profile = get_profile("grade")
    setup = few_label_setup(profile)
    draws = label_draws(train, per_class=2, draws=1)
    seed_everything(5)
    same_start = build_classifier("tiny_cnn", 10).encoder  # what from-scratch draws first with seed 5
    tuned, models = few_label_finetune(same_start, profile, draws, test, seed=5, progress=False)
    scratch, scratch_models = few_label_supervised(lambda: build_classifier("tiny_cnn", 10), draws, test,
                                                   steps=setup.supervised_steps, lr=setup.supervised_lr,
                                                   batch_size=setup.supervised_batch_size, seed=5, progress=False)
    assert tuned.accuracies == scratch.accuracies
    assert all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(),
                                                  scratch_models[0].state_dict().values()))
    other, _ = build_encoder("tiny_cnn")
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    before = [t.clone() for t in other.state_dict().values()]
    _, moved = few_label_finetune(other, profile, draws, test, seed=5, progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(moved[0].state_dict().values(),
                                                     scratch_models[0].state_dict().values()))
    # the pretrained encoder itself is not trained: fine-tuning works on a copy
    assert all(torch.equal(a, b) for a, b in zip(before, other.state_dict().values()))


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
