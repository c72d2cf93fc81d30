"""Models of the lab. Each classifier is `classifier(encoder(x))`, so the self-supervision
notebooks can train an encoder on a pretext task and reuse it under a new head."""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

# Channel statistics of ImageNet, for torchvision's pretrained models (which expect
# normalized input; the attacks in this lab work on [0, 1] images, so wrap them in Normalized).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EncoderClassifier(nn.Module):
    """An encoder (images -> feature vectors of size `feature_dim`) and a classifier head."""

    def __init__(self, encoder: nn.Module, classifier: nn.Module, feature_dim: int):
        super().__init__()
        self.encoder, self.classifier, self.feature_dim = encoder, classifier, feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def small_cnn_trunk(in_channels: int = 3, width: int = 32) -> nn.Sequential:
    """conv(w)-conv(2w)-pool-conv(2w)-pool: 32x32 images -> (2w, 8, 8) feature maps."""
    return nn.Sequential(
        _conv_bn_relu(in_channels, width), _conv_bn_relu(width, 2 * width), nn.MaxPool2d(2),
        _conv_bn_relu(2 * width, 2 * width), nn.MaxPool2d(2),
    )


class SmallCNN(EncoderClassifier):
    """A CNN that trains in seconds on a CPU: conv32-conv64-pool-conv64-pool, read out by
    average pooling to `readout` x `readout` cells, then fc128 and the classes.

    The encoder's output (64 * readout**2 features) is what the linear probes read.
    """

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, width: int = 32, readout: int = 4,
                 hidden: int = 128):
        trunk = small_cnn_trunk(in_channels, width)
        encoder = nn.Sequential(trunk, nn.AdaptiveAvgPool2d(readout), nn.Flatten())
        feature_dim = 2 * width * readout * readout
        classifier = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        super().__init__(encoder, classifier, feature_dim)


def resnet18_cifar(num_classes: int = 10) -> EncoderClassifier:
    """torchvision's ResNet-18 adapted to 32x32 images as is usual for CIFAR: a 3x3 stem
    with stride 1 and no max-pool (He et al. 2016 used this stem for their CIFAR ResNets)."""
    from torchvision.models import resnet18

    net = resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    encoder = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4,
                            net.avgpool, nn.Flatten())
    return EncoderClassifier(encoder, net.fc, net.fc.in_features)


# The small CNNs by name and width. The grade profile's is a quarter as wide (8-16-16
# channels, about 1/12 of the multiply-adds): the autograder's token training and evaluations
# run every cell on the same code in a fraction of the time (a third of a whole-lab
# submission's grading time went into the full-width model's convolutions), and no test
# reads what a notebook trains.
SMALL_CNN_WIDTHS = {"small_cnn": 32, "tiny_cnn": 8}


def build_model(name: str, num_classes: int = 10) -> EncoderClassifier:
    """A model by name: "small_cnn" (quick profile), "tiny_cnn" (grade profile: the same small
    CNN, narrower; `SMALL_CNN_WIDTHS`) or "resnet18" (full profile)."""
    if name in SMALL_CNN_WIDTHS:
        return SmallCNN(num_classes, width=SMALL_CNN_WIDTHS[name])
    if name == "resnet18":
        return resnet18_cifar(num_classes)
    raise ValueError(f"unknown model {name!r}: choose one of {[*SMALL_CNN_WIDTHS, 'resnet18']}")


class Normalized(nn.Module):
    """Wraps a model that expects normalized input so that it takes images in [0, 1].

    The attacks perturb and clamp in pixel space; normalization is then part of the model
    the gradient flows through, as torchattacks' `set_normalization_used` does.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


# --- Self-supervised pretext models. Each wraps an encoder (images -> feature vectors of
# size `feature_dim`, e.g. `SmallCNN().encoder`) and keeps it as `.encoder`: the encoder's
# output is the representation that linear probes read, never the pretext head's.


def _mlp(d_in: int, hidden: int | None, d_out: int) -> nn.Module:
    if hidden is None:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class RotationClassifier(EncoderClassifier):
    """RotNet (Gidaris et al. 2018): the encoder and a head that tells the rotation, 4 logits
    for 0, 90, 180 and 270 degrees (the labels of `augment.rotate_batch`). `hidden=None`
    makes the head linear."""

    def __init__(self, encoder: nn.Module, feature_dim: int, *, hidden: int | None = 128):
        super().__init__(encoder, _mlp(feature_dim, hidden, 4), feature_dim)


class PatchSiamese(nn.Module):
    """Late-fusion siamese network for context prediction (Doersch et al. 2015).

    One shared encoder embeds the centre patch and the neighbour separately; their features
    are concatenated and an MLP gives 8 logits, one per neighbour position (the labels of
    `augment.PatchLocalization`). `forward` takes the pair `(center, neighbor)`, which is
    what `PatchLocalization.batch_transform` hands `fit` as the inputs. Patches may be
    smaller than the images the encoder is later probed on, as long as the encoder pools
    to a fixed size (SmallCNN's ends in AdaptiveAvgPool2d).
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, *, hidden: int = 256):
        super().__init__()
        self.encoder, self.feature_dim = encoder, feature_dim
        self.head = _mlp(2 * feature_dim, hidden, 8)

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        center, neighbor = pair
        features = self.encoder(torch.cat([center, neighbor]))  # one pass: both patches share weights
        f_center, f_neighbor = features.chunk(2)
        return self.head(torch.cat([f_center, f_neighbor], 1))


class SimCLRModel(nn.Module):
    """SimCLR (Chen et al. 2020): the encoder f and a projection head g, z = g(f(x)).

    `forward` returns the projections z that NT-Xent compares. The representation for
    downstream tasks is the encoder's output f(x), *before* the head: `model.encoder`.
    Chen et al. found it linearly separates classes far better than z, because the
    contrastive loss makes z invariant to the augmentations and discards what they change.
    The head is their 2-layer MLP, Linear-ReLU-Linear, to `projection_dim` (128 in the paper).
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, *, projection_dim: int = 128, hidden: int = 512):
        super().__init__()
        self.encoder, self.feature_dim = encoder, feature_dim
        self.projection_head = _mlp(feature_dim, hidden, projection_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.encoder(x))


# (architecture, weights) -> the registry entry in course_utils.download holding the file
PRETRAINED = {
    ("resnet50", "IMAGENET1K_V1"): "resnet50-imagenet1k-v1",
    ("resnet50", "IMAGENET1K_V2"): "resnet50-imagenet1k-v2",
    ("densenet121", "IMAGENET1K_V1"): "densenet121-imagenet1k-v1",
}
# torchvision's DenseNet files use the old key names "norm.1", "conv.2"; torchvision renames
# them on load (densenet._load_state_dict), and so must we
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def pretrained_resnet50(weights: str | None = "IMAGENET1K_V1", *, download: bool = True,
                        progress: bool = True) -> Normalized:
    """torchvision's ResNet-50 trained on ImageNet-1k, wrapped in `Normalized` so that it takes
    images in [0, 1] (1000 logits), in eval mode.

    `weights`: "IMAGENET1K_V1" (76.1% top-1, the original recipe: the model the ImageNet-A
    paper reports at a few percent accuracy), "IMAGENET1K_V2" (80.9%, torchvision's newer
    recipe), a `torchvision.models.ResNet50_Weights` member, or None for random weights.
    See `pretrained_imagenet` for where the file comes from.
    """
    return pretrained_imagenet("resnet50", weights, download=download, progress=progress)


def _verified(path, asset) -> bool:
    """Whether a file found outside the course's data folder (torch hub's cache) is the one the
    registry names: its SHA-256, or the prefix torchvision puts in the file name."""
    from . import download as dl

    if not (asset.sha256 or asset.sha256_prefix):
        return False  # nothing to check it against: download through the verified path instead
    digest = dl.file_digests(path)["sha256"]
    return digest == asset.sha256 if asset.sha256 else digest.startswith(asset.sha256_prefix)


def pretrained_imagenet(arch: str, weights: str | None = "IMAGENET1K_V1", *, download: bool = True,
                        progress: bool = True) -> Normalized:
    """A torchvision ImageNet-1k classifier (`arch`: "resnet50" or "densenet121"), wrapped in
    `Normalized` (images in [0, 1], 1000 logits), in eval mode; None for random weights.

    The file is read from the data directory (`<data dir>/weights/`, registry entries in
    `PRETRAINED`); a copy already in torch hub's cache is reused if its SHA-256 matches the
    registry's (the prefix in torchvision's file name); otherwise it is downloaded if
    `download`, verified by the course downloader.
    """
    from pathlib import Path

    from torchvision import models as tvm

    from . import download as dl

    if arch not in {a for a, _ in PRETRAINED}:
        raise ValueError(f"arch must be one of {sorted({a for a, _ in PRETRAINED})}, got {arch!r}")
    build = getattr(tvm, arch)
    if weights is None:
        return Normalized(build()).eval()
    key = str(getattr(weights, "name", weights)).upper()
    if (arch, key) not in PRETRAINED:
        known = [w for a, w in PRETRAINED if a == arch]
        raise ValueError(f"weights for {arch} must be one of {known} or None, got {weights!r}")
    asset = dl.get_asset(PRETRAINED[arch, key])
    path = asset.path
    if not path.is_file():
        hub_copy = Path(torch.hub.get_dir()) / "checkpoints" / asset.filename
        if hub_copy.is_file() and _verified(hub_copy, asset):
            path = hub_copy
        elif download:
            path = dl.fetch(asset.name, progress=progress)
        else:
            raise FileNotFoundError(
                f"the {arch} weights {key} are not in {path.parent}. Fix: run `course-lab fetch-data "
                f"{asset.name}` on a machine with internet (and copy {dl.data_dir()} here), or download "
                f"{asset.url} and save it as {path}."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: torch raises several kinds
        raise RuntimeError(f"could not read the {arch} weights {path} ({err}). Fix: delete the file and "
                           f"run `course-lab fetch-data {asset.name}` again.") from err
    if arch == "densenet121":
        state = {(m.group(1) + m.group(2) if (m := _DENSENET_OLD_KEY.match(k)) else k): v for k, v in state.items()}
    with torch.device("meta"):  # skip the random initialization the weights overwrite
        net = build()
    net.load_state_dict(state, assign=True)
    return Normalized(net).eval()
