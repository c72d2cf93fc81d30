"""The lab's pretext tasks as recipes: which encoder, how long, which settings, per profile.

Notebooks 04, 05 and 06 train the same encoders: 04 and 05 train one each and save it,
06 compares all of them and trains only what it cannot load. So that all three agree on
what "the rotation encoder of the quick profile" is, its settings live here, once:

    recipe = pretext_recipe("rotation", profile)       # steps, batch size, lr, task options
    encoder, dim = build_encoder(recipe.encoder)
    model, history = train_pretext(recipe, encoder, dim, train_set, device=profile.device)
    encoder, info = load_or_train_encoder("rotation", profile, train_set, seed=SEED)   # what 06 does

Every task gets the same compute on a profile (`image_passes`): the tasks are compared at an
equal budget, not at whatever budget made each one look good. Named variants of a recipe
(`VARIANTS`: patch localization without gap and jitter, SimCLR without flips or colour) are
the ablations the notebooks measure; each has its own checkpoint.

The encoder is what a linear probe reads: for the quick profile the small CNN's trunk read
out by average pooling to 2x2 cells (64 channels x 4 = 256 features). Global average pooling
(1x1, 64 features) throws away where in the image a feature fired, and on Digits-M it leaves
every pretext task within noise of a random encoder; the 2x2 readout keeps a coarse layout.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable

import torch
from torch import nn

from .augment import PatchLocalization, SimCLRViews, rotation_batch_transform
from .checkpoints import load_checkpoint, save_checkpoint
from .data import make_loader
from .losses import NTXentLoss
from .models import (SMALL_CNN_WIDTHS, EncoderClassifier, PatchSiamese, RotationClassifier, SimCLRModel, SmallCNN,
                     resnet18_cifar)
from .train import History, fit

TASKS = ("rotation", "patch_localization", "simclr")
SMALL_CNN_READOUT = 2
ENCODERS = {"quick": "small_cnn", "grade": "tiny_cnn", "full": "resnet18"}  # per profile, for every task
IMAGE_SIZE = 32  # the side of the images every profile trains on (Digits-M, CIFAR-10)
# The ablations of the notebooks: options that replace the recipe's (SimCLR's `views` are
# keyword arguments of `SimCLRViews.for_small_images`).
VARIANTS = {
    "patch_localization": {"no-gap": {"gap": 0, "jitter": 0}},   # edges may continue across the border: a shortcut
    "simclr": {"no-flip": {"views": {"flip_p": 0.0}},                # crop + colour
               "crop-only": {"views": {"flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0}}},
}


def build_classifier(name: str, num_classes: int = 10) -> EncoderClassifier:
    """The encoder `name` with a classifier head: the supervised baseline a pretext task must beat."""
    if name in SMALL_CNN_WIDTHS:
        return SmallCNN(num_classes, width=SMALL_CNN_WIDTHS[name], readout=SMALL_CNN_READOUT)
    if name == "resnet18":
        return resnet18_cifar(num_classes)
    raise ValueError(f"unknown encoder {name!r}: choose one of {[*SMALL_CNN_WIDTHS, 'resnet18']}")


def build_encoder(name: str) -> tuple[nn.Module, int]:
    """(encoder, feature_dim): "small_cnn" (2x2 readout, 256 features), "tiny_cnn" (the grade
    profile's, a quarter as wide: 64 features) or "resnet18" (CIFAR stem, 512)."""
    model = build_classifier(name)
    return model.encoder, model.feature_dim


@dataclasses.dataclass(frozen=True)
class PretextRecipe:
    """How one pretext task is trained on one profile. `options` are the task's own settings;
    `variant` names an ablation of `VARIANTS` ("" for the lab's recipe)."""

    task: str
    encoder: str
    steps: int
    batch_size: int
    lr: float
    options: dict = dataclasses.field(default_factory=dict)
    variant: str = ""

    def config(self) -> dict:
        """What a checkpoint of this recipe must match to be reused."""
        return dataclasses.asdict(self)

    @property
    def images_seen(self) -> int:
        """Unlabelled images drawn in training: steps x batch (for patch localization, one pair each)."""
        return self.steps * self.batch_size


def passes_per_image(task: str, options: dict | None = None, image_size: int = IMAGE_SIZE) -> float:
    """The network's work per training image, in forward-and-backward passes of one whole image:
    rotation 4 (all four rotations), SimCLR 2 (two views), patch localization two patches of
    `patch_size`^2 pixels, i.e. 2 (patch_size / image_size)^2 (1/8 for 8-pixel patches of 32).

    A convolutional encoder's cost grows with the pixels it reads, so this is the compute a
    step costs up to the fixed overheads; the notebooks print the seconds it took beside it.
    """
    if task == "rotation":
        return 4.0
    if task == "simclr":
        return 2.0
    if task == "patch_localization":
        return 2.0 * ((options or {}).get("patch_size", 8) / image_size) ** 2
    raise ValueError(f"unknown pretext task {task!r}: choose one of {TASKS}")


def image_passes(recipe: PretextRecipe) -> int:
    """The recipe's compute: images seen x `passes_per_image` (equal for every task of a profile)."""
    return round(recipe.images_seen * passes_per_image(recipe.task, recipe.options))


def pretext_recipe(task: str, profile: Any, variant: str = "") -> PretextRecipe:
    """The lab's settings for `task` on `profile`, or of its ablation `variant` (a name in `VARIANTS`).

    Every task gets the same compute (`image_passes`) on quick and full (grade's two steps are
    not equalized): on quick, 7,680 passes of a 32-pixel
    image, about 15 s each on 2 CPU cores; on full, 256,000 (an estimate of 2-4 min each on a
    T4-class GPU: no GPU run measured it).

    - rotation: all four rotations of every image in each batch (RotNet), 32 images (128
      rotated) per step: 60 steps of 32 images x 4 passes;
    - patch_localization: 8-pixel patches, gap 2, jitter 1 (Doersch et al.'s 96/48/7 scaled
      to 32-pixel images), colours kept (`color=None`): Digits-M's colours come from no lens,
      so there are no colour fringes to hide, and colour is part of what tells a digit from
      its background (the probe reads colour images); a pair costs 1/8 of a pass, so 240
      steps of 256 pairs;
    - simclr: the 32-pixel views of `SimCLRViews.for_small_images`, batch 64 (126 negatives
      per anchor) for 60 steps, temperature 0.1: with batches this small and training this
      short, a sharper softmax gives the hardest negatives more weight (Chen et al. 2020
      discuss the temperature's role). The lab does not measure other temperatures.
    """
    if task not in TASKS:
        raise ValueError(f"unknown pretext task {task!r}: choose one of {TASKS}")
    if variant and variant not in VARIANTS.get(task, {}):
        raise ValueError(f"unknown variant {variant!r} of {task}: choose one of {list(VARIANTS.get(task, {}))}")
    pick = profile.pick  # sizes through `pick`, so that the smoke switch shrinks them like the notebooks' own
    encoder = ENCODERS[profile.name]
    grade_steps = profile.max_steps or 2
    if task == "rotation":
        steps, batch = pick(quick=60, full=500, grade=grade_steps), pick(quick=32, full=128, grade=8)
        options = {}
    elif task == "patch_localization":
        steps, batch = pick(quick=240, full=4000, grade=grade_steps), pick(quick=256, full=512, grade=16)
        options = {"patch_size": 8, "gap": 2, "jitter": 1, "color": None}
    else:
        steps, batch = pick(quick=60, full=500, grade=grade_steps), pick(quick=64, full=256, grade=16)
        options = {"temperature": pick(quick=0.1, full=0.2, grade=0.1), "views": {}}
    options.update(copy.deepcopy(VARIANTS.get(task, {}).get(variant, {})))
    lr = pick(quick=3e-3, full=2e-3, grade=3e-3)
    return PretextRecipe(task, encoder, steps, batch, lr, options, variant)


def pretext_model(recipe: PretextRecipe, encoder: nn.Module, feature_dim: int) -> nn.Module:
    """The encoder under the task's head: RotationClassifier, PatchSiamese or SimCLRModel."""
    if recipe.task == "rotation":
        return RotationClassifier(encoder, feature_dim)
    if recipe.task == "patch_localization":
        return PatchSiamese(encoder, feature_dim)
    return SimCLRModel(encoder, feature_dim)


def pretext_transform(recipe: PretextRecipe, generator: torch.Generator | None = None) -> Callable:
    """`fit`'s batch transform for the task (the library's batched augmenters)."""
    if recipe.task == "rotation":
        return rotation_batch_transform
    if recipe.task == "patch_localization":
        return PatchLocalization(**recipe.options, generator=generator).batch_transform
    return SimCLRViews.for_small_images(IMAGE_SIZE, generator=generator, **recipe.options["views"]).batch_transform


def pretext_loss(recipe: PretextRecipe) -> Callable | None:
    """`fit`'s loss: cross-entropy (None) for the classification tasks, NT-Xent for SimCLR."""
    return NTXentLoss(recipe.options["temperature"]) if recipe.task == "simclr" else None


def train_pretext(recipe: PretextRecipe, encoder: nn.Module, feature_dim: int, train_set, *, device=None,
                  seed: int = 0, batch_transform: Callable | None = None, loss_fn: Callable | None = None,
                  progress: bool = True) -> tuple[nn.Module, History]:
    """Train `encoder` on the recipe's pretext task (labels of `train_set` unused); returns (model, history).

    `batch_transform` and `loss_fn` replace the library's (the notebooks pass the student's
    functions). Batches are shuffled with `seed`; the last incomplete batch is dropped, so
    every contrastive batch has the same number of negatives.
    """
    model = pretext_model(recipe, encoder, feature_dim)
    batch = min(recipe.batch_size, len(train_set))
    loader = make_loader(train_set, batch, shuffle=True, device=device, seed=seed, drop_last=True)
    epochs = max(1, math.ceil(recipe.steps / len(loader)))
    history = fit(model, loader, epochs=epochs, max_steps=recipe.steps, lr=recipe.lr,
                  batch_transform=batch_transform or pretext_transform(recipe), loss_fn=loss_fn or pretext_loss(recipe),
                  device=device, progress=progress, desc=recipe.task.replace("_", " "))
    return model, history


def encoder_checkpoint_name(task: str, variant: str = "") -> str:
    return f"{task.replace('_', '-')}{'-' + variant if variant else ''}-encoder"


def save_pretrained_encoder(task: str, encoder: nn.Module, profile: Any, *, seed: int = 0,
                            extra: dict | None = None, variant: str = ""):
    """Save an encoder trained with `pretext_recipe(task, profile, variant)`, for `load_or_train_encoder`."""
    return save_checkpoint(encoder, encoder_checkpoint_name(task, variant), profile=profile, seed=seed,
                           config=pretext_recipe(task, profile, variant).config(), extra=extra)


def load_or_train_encoder(task: str, profile: Any, train_set, *, seed: int = 0, use_checkpoints: bool = True,
                          progress: bool = True, variant: str = "") -> tuple[nn.Module, dict]:
    """The encoder pretrained on `task` (or its ablation `variant`) for `profile`: loaded if a
    notebook saved it, else trained (and saved).

    Returns (encoder in eval mode, info) where info says {"source": "checkpoint" | "trained",
    "seconds": training time, ...}. `use_checkpoints=False` always trains and saves nothing.
    """
    from .runtime import seed_everything

    recipe = pretext_recipe(task, profile, variant)
    seed_everything(seed)
    encoder, dim = build_encoder(recipe.encoder)
    if use_checkpoints:
        extra = load_checkpoint(encoder, encoder_checkpoint_name(task, variant), profile=profile, seed=seed,
                                config=recipe.config())
        if extra is not None:
            return encoder.to(profile.device).eval(), {**extra, "source": "checkpoint"}
    _, history = train_pretext(recipe, encoder, dim, train_set, device=profile.device, seed=seed, progress=progress)
    info = {"source": "trained", "seconds": round(history.total_seconds, 1)}
    if use_checkpoints:
        save_pretrained_encoder(task, encoder, profile, seed=seed, extra=info, variant=variant)
    return encoder.eval(), info


# --------------------------------------------------------------------------- few labels


@dataclasses.dataclass(frozen=True)
class FewLabelSetup:
    """The downstream task: `per_class` labelled images per class, drawn `draws` times; random-init
    encoders of `random_seeds` seeds; and how the supervised baseline is trained on those labels."""

    per_class: int
    draws: int
    random_seeds: int
    supervised_steps: int
    supervised_batch_size: int
    supervised_lr: float


def few_label_setup(profile: Any) -> FewLabelSetup:
    """quick: 10 labels per class (100 of Digits-M's 1,437 training images), 3 draws, 3 random seeds;
    full: 100 per class (2% of CIFAR-10); grade: the least that runs."""
    pick = profile.pick  # sizes through `pick`, so that the smoke switch shrinks them
    return FewLabelSetup(per_class=pick(quick=10, full=100, grade=2), draws=pick(quick=3, full=3, grade=1),
                         random_seeds=pick(quick=3, full=3, grade=1),
                         supervised_steps=pick(quick=200, full=500, grade=profile.max_steps or 2),
                         supervised_batch_size=pick(quick=16, full=64, grade=8),
                         supervised_lr=pick(quick=3e-3, full=2e-3, grade=3e-3))


def load_or_train_supervised(profile: Any, labelled_sets, test_set, *, seed: int = 0, use_checkpoints: bool = True,
                             retrain: bool = False, progress: bool = True):
    """The supervised baseline on each labelled set: the encoder and a classifier head trained from
    scratch on the few labels (`probe.few_label_supervised`). A model saved for the same draw and
    settings is loaded instead of trained, unless `retrain`; trained models are saved.

    Returns (FewLabelResult of test accuracies, list of models, info).
    """
    from .probe import FewLabelResult, few_label_supervised
    from .train import evaluate

    setup = few_label_setup(profile)
    encoder_name = ENCODERS[profile.name]
    num_classes = len(test_set.classes)
    make = lambda: build_classifier(encoder_name, num_classes)  # noqa: E731
    configs = [{"encoder": encoder_name, "per_class": setup.per_class, "draw": d, "draw_seed": seed + d,
                "labelled": len(labelled), "steps": setup.supervised_steps, "batch_size": setup.supervised_batch_size,
                "lr": setup.supervised_lr} for d, labelled in enumerate(labelled_sets)]
    models, loaded = [], 0
    if use_checkpoints and not retrain:
        for d, config in enumerate(configs):
            model = make()
            if load_checkpoint(model, f"supervised-draw{d}", profile=profile, seed=seed, config=config) is None:
                break
            models.append(model.to(profile.device).eval())
        loaded = len(models)
    if loaded == len(labelled_sets):
        test_loader = make_loader(test_set, 512, device=profile.device)
        accuracies = [evaluate(m, test_loader, device=profile.device)["accuracy"] for m in models]
        return FewLabelResult(accuracies), models, {"source": "checkpoint"}
    result, models = few_label_supervised(make, labelled_sets, test_set, steps=setup.supervised_steps,
                                          lr=setup.supervised_lr, batch_size=setup.supervised_batch_size, seed=seed,
                                          device=profile.device, progress=progress)
    if use_checkpoints:
        for d, (model, config) in enumerate(zip(models, configs)):
            save_checkpoint(model, f"supervised-draw{d}", profile=profile, seed=seed, config=config)
    return result, models, {"source": "trained"}


def few_label_finetune(encoder: nn.Module, profile: Any, labelled_sets, test_set, *, seed: int = 0,
                       progress: bool = True):
    """Fine-tuning on the few labels: the supervised baseline's recipe (`few_label_setup`, the same
    steps, batch size, learning rate and seeds as `load_or_train_supervised`), started from a copy
    of the pretrained `encoder` instead of random weights, every layer trained.

    With the same seed the classifier head starts from the same weights as the baseline's, so
    fine-tuning and training from scratch on one draw differ only in where the encoder starts.
    Returns (FewLabelResult of test accuracies, list of models).
    """
    from .probe import few_label_supervised

    setup = few_label_setup(profile)
    num_classes = len(test_set.classes)

    def pretrained_classifier() -> EncoderClassifier:
        model = build_classifier(ENCODERS[profile.name], num_classes)
        model.encoder.load_state_dict(encoder.state_dict())
        return model

    return few_label_supervised(pretrained_classifier, labelled_sets, test_set, steps=setup.supervised_steps,
                                lr=setup.supervised_lr, batch_size=setup.supervised_batch_size, seed=seed,
                                device=profile.device, progress=progress)
