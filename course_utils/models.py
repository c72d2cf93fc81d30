"""Models of the lab. Each classifier is `classifier(encoder(x))`, so the self-supervision
notebooks can train an encoder on a pretext task and reuse it under a new head."""
from __future__ import annotations

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


def build_model(name: str, num_classes: int = 10) -> EncoderClassifier:
    """A model by name: "small_cnn" (quick and grade profiles) or "resnet18" (full profile)."""
    if name == "small_cnn":
        return SmallCNN(num_classes)
    if name == "resnet18":
        return resnet18_cifar(num_classes)
    raise ValueError(f"unknown model {name!r}: choose 'small_cnn' or 'resnet18'")


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
