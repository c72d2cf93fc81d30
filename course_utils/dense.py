"""Pretext tasks beyond classification (notebook 07): colorization and inpainting.

Both predict pixels, so the model is an encoder-decoder: the small CNN's trunk (the
encoder the other notebooks probe) and a light decoder back to a 32x32 image.

- Colorization (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016): the input
  is the grayscale image, the target its colours. Zhang et al. predict a distribution over
  quantized colours, because regressing RGB with a squared error averages the plausible
  colours of an object into a dull brown; we regress, which is simpler and shows the effect.
- Inpainting (Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016):
  a square hole is cut at a random place in every image and the network fills it in; the
  loss counts mostly the hole (0.999 against 0.001 for the rest: this lab's choice; Pathak et al.
  predict the hole alone, and their 0.999 / 0.001 balance the reconstruction and adversarial losses).

Both batch transforms follow `fit`'s `(x, y) -> (inputs, targets)` and ignore the labels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augment import to_grayscale
from .models import small_cnn_trunk


class ToGrayscale(nn.Module):
    """RGB -> luma repeated on 3 channels, as a module (to probe a colorization encoder on what it saw)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_grayscale(x)


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class EncoderDecoder(nn.Module):
    """The small CNN's trunk (32x32 -> 2w x 8 x 8), then two upsampling convolutions back to
    `out_channels` x 32 x 32 in [0, 1] (a sigmoid).

    `encoder` reads the trunk out by average pooling to `readout` x `readout` cells, as the
    other notebooks' encoders do, and shares the trunk's weights.
    """

    def __init__(self, out_channels: int = 3, *, in_channels: int = 3, width: int = 32, readout: int = 2):
        super().__init__()
        self.trunk = small_cnn_trunk(in_channels, width)
        self.decoder = nn.Sequential(_up(2 * width, width), _up(width, width), nn.Conv2d(width, out_channels, 3, padding=1),
                                     nn.Sigmoid())
        self.encoder = nn.Sequential(self.trunk, nn.AdaptiveAvgPool2d(readout), nn.Flatten())
        self.feature_dim = 2 * width * readout * readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.trunk(x))


def colorization_batch(x: torch.Tensor, y=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit`'s batch transform for colorization: (grayscale images, the colour images)."""
    return to_grayscale(x), x


def square_holes(n: int, height: int, width: int, hole: int, *, generator: torch.Generator | None = None,
                 device=None) -> torch.Tensor:
    """(n, 1, height, width) masks, True inside one `hole` x `hole` square at a random place per image."""
    if not 0 < hole <= min(height, width):
        raise ValueError(f"hole must be between 1 and the image side, got {hole} for {height}x{width} images")
    gen_device = generator.device if generator is not None else device
    top = torch.randint(0, height - hole + 1, (n, 1, 1), generator=generator, device=gen_device).to(device)
    left = torch.randint(0, width - hole + 1, (n, 1, 1), generator=generator, device=gen_device).to(device)
    rows = torch.arange(height, device=device).view(1, -1, 1)
    cols = torch.arange(width, device=device).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + hole) & (cols >= left) & (cols < left + hole)
    return inside[:, None]


class Inpainting:
    """Cut a `hole` x `hole` square out of every image (filled with gray) and ask for the image back.

    `batch_transform(x, y) -> (holed images, (x, mask))`; `loss((prediction, (x, mask)))`
    weighs the squared error inside the hole by `hole_weight` and outside by 1 - hole_weight.
    """

    def __init__(self, hole: int = 12, *, fill: float = 0.5, hole_weight: float = 0.999,
                 generator: torch.Generator | None = None):
        self.hole, self.fill, self.hole_weight, self.generator = hole, fill, hole_weight, generator

    def holes(self, x: torch.Tensor) -> torch.Tensor:
        return square_holes(len(x), x.shape[-2], x.shape[-1], self.hole, generator=self.generator, device=x.device)

    def cut(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, torch.full_like(x, self.fill), x)

    def batch_transform(self, x: torch.Tensor, y=None):
        mask = self.holes(x)
        return self.cut(x, mask), (x, mask)

    def loss(self, prediction: torch.Tensor, target) -> torch.Tensor:
        x, mask = target
        error = (prediction.float() - x.float()) ** 2
        inside = mask.expand_as(error).float()
        hole_mean = (error * inside).sum() / inside.sum().clamp(min=1)
        rest_mean = (error * (1 - inside)).sum() / (1 - inside).sum().clamp(min=1)
        return self.hole_weight * hole_mean + (1 - self.hole_weight) * rest_mean


def colorization_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted colours (in float32 under mixed precision)."""
    return F.mse_loss(prediction.float(), target.float())
